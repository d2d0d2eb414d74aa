"""Rule download_corruptions: fetch a corruption archive and verify its md5."""

from kdspectra import stages
from kdspectra.config import corruption_source
from kdspectra.runtime.logs import job

# The URL is no param (see data.smk): another mirror of the same md5 must not rerun the job.
url = corruption_source(snakemake.config, snakemake.wildcards.dataset)["url"]
with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.download_corruptions(snakemake.input, snakemake.output, {**snakemake.params, "url": url})
