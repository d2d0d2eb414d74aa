"""Rule download: fetch a dataset archive and verify its md5."""

from kdspectra.logs import log_to
from kdspectra.stages import download_archive

with log_to(snakemake.log[0]):
    download_archive(snakemake.params.url, snakemake.params.md5, snakemake.output[0])
