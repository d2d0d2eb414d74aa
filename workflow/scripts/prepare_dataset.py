"""Rule prepare_dataset: archive -> uint8 arrays, labels and class names."""

from kdspectra.logs import job
from kdspectra.stages import prepare

with job(snakemake.log[0], snakemake.threads):
    archive = snakemake.input.archive or None
    source = snakemake.config["datasets"][snakemake.params.dataset]  # not a param: see data.smk
    prepare(snakemake.params.fmt, archive, snakemake.params.outdir, source)
