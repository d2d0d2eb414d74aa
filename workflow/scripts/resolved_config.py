"""Rule resolved_config: record the exact config (defaults filled in) the run used."""

from kdspectra.logs import log_to
from kdspectra.stages import write_resolved_config

with log_to(snakemake.log[0]):
    write_resolved_config(snakemake.params.config, snakemake.output[0])
