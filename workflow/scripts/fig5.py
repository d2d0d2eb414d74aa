"""Rule fig5: Figure 5, accuracy under common corruptions per family."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.fig5(snakemake.input, snakemake.output, snakemake.params)
