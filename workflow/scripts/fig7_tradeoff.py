"""Rule fig7_tradeoff: Figure 7 (what InfoNCE's expansion costs, per λ) and its data."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.fig7_tradeoff(snakemake.input, snakemake.output, snakemake.params)
