"""Rule claims: each claim of the paper judged on this run -> claims.{csv,md}."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.claims(snakemake.input, snakemake.output, snakemake.params)
