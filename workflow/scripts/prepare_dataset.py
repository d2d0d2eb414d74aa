"""Rule prepare_dataset: archive -> uint8 arrays, labels and class names."""

from kdspectra.logs import log_to
from kdspectra.stages import prepare

with log_to(snakemake.log[0]):
    archive = snakemake.input.archive or None
    prepare(snakemake.params.fmt, archive, snakemake.params.outdir, snakemake.params.source)
