"""Rule table_html: one table as an HTML page for the report."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.table_html(snakemake.input, snakemake.output, snakemake.params)
