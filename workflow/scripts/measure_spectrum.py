"""Rule measure_spectrum: singular values and effective rank of one model's test embeddings."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads):
    stages.measure_spectrum(snakemake.input, snakemake.output, snakemake.params)
