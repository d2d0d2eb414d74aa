"""Rule paper_comparison: every number of the paper beside ours."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.paper_comparison(snakemake.input, snakemake.output, snakemake.params)
