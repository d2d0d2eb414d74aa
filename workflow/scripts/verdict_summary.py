"""Rule verdict_summary: the claims' verdicts summary for the report's landing page."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.verdict_summary(snakemake.input, snakemake.output, snakemake.params)
