"""Rule collect: every model's metrics -> the run summary and the long noise table."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads):
    stages.collect(snakemake.input, snakemake.output, snakemake.params)
