"""Rule collect: every model's metrics -> the run summary and the long noise table."""

from kdspectra.logs import job
from kdspectra.stages import collect

with job(snakemake.log[0], snakemake.threads):
    collect(snakemake.params.records, snakemake.output.summary, snakemake.output.noise)
