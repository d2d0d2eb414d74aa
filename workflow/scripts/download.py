"""Rule download: fetch a dataset archive and verify its md5."""

from kdspectra.logs import job
from kdspectra.stages import download_archive

with job(snakemake.log[0], snakemake.threads):
    download_archive(snakemake.params.url, snakemake.params.md5, snakemake.output[0])
