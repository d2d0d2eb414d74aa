"""Rule resolved_config: record the exact config (defaults filled in) the run used."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.resolved_config(snakemake.input, snakemake.output, snakemake.params)
