"""Rule measure_noise: linear-probe accuracy of one model under every Gaussian noise level."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads):
    stages.measure_noise(snakemake.input, snakemake.output, snakemake.params)
