"""Rule download: fetch a dataset archive and verify its md5."""

from kdspectra import stages
from kdspectra.runtime.logs import job

# The URL is no param (see data.smk): another mirror of the same md5 must not rerun the job.
url = snakemake.config["datasets"][snakemake.params.dataset]["url"]
with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.download(snakemake.input, snakemake.output, {**snakemake.params, "url": url})
