"""Rule collect: every model's metrics -> the run summary and the long noise table."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.collect(snakemake.input, snakemake.output, snakemake.params)
