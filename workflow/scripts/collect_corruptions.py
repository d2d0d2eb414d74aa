"""Rule collect_corruptions: every model's corruption accuracies in one table."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.collect_corruptions(snakemake.input, snakemake.output, snakemake.params)
