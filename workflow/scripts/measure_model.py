"""Rule measure_model: one model's spectrum and geometry, and its accuracy under noise."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.measure_model(snakemake.input, snakemake.output, snakemake.params)
