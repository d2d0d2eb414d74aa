"""Rule fig4_data: Figure 4's data table from every run's tracked geometry."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.fig4_data(snakemake.input, snakemake.output, snakemake.params)
