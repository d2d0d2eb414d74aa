"""Rule download: fetch a dataset archive and verify its md5."""

from kdspectra.logs import job
from kdspectra.stages import download_archive

with job(snakemake.log[0], snakemake.threads):
    url = snakemake.config["datasets"][snakemake.params.dataset]["url"]  # not a param: see data.smk
    download_archive(url, snakemake.params.md5, snakemake.output[0])
