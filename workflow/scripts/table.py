"""Rules table and data_table: render one table as CSV (and Markdown/LaTeX when asked)."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.table(snakemake.input, snakemake.output, snakemake.params)
