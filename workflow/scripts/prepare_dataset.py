"""Rule prepare_dataset: archive -> uint8 arrays, labels and class names."""

from kdspectra.logs import job
from kdspectra.stages import prepare

with job(snakemake.log[0], snakemake.threads):
    archive = snakemake.input.archive or None
    prepare(snakemake.params.fmt, archive, snakemake.params.outdir, snakemake.params.source)
