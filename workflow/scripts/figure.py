"""Rule figure: render Figure 1, 2 or 3 as PNG and PDF."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.figure(snakemake.input, snakemake.output, snakemake.params)
