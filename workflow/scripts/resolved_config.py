"""Rule resolved_config: record the exact config (defaults filled in) the run used."""

from kdspectra.logs import job
from kdspectra.stages import write_resolved_config

with job(snakemake.log[0], snakemake.threads):
    write_resolved_config(snakemake.params.config, snakemake.output[0])
