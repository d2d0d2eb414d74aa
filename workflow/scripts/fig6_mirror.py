"""Rule fig6_mirror: Figure 6 (the mirror) and its data."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.fig6_mirror(snakemake.input, snakemake.output, snakemake.params)
