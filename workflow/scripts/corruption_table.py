"""Rule corruption_table: tables/corruptions.{csv,md} with its provenance sidecar."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.corruption_table(snakemake.input, snakemake.output, snakemake.params)
