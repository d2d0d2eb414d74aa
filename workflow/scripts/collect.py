"""Rule collect: every model's metrics -> the run summary and the long noise table."""

from kdspectra.logs import log_to
from kdspectra.stages import collect

with log_to(snakemake.log[0]):
    collect(snakemake.params.records, snakemake.output.summary, snakemake.output.noise)
