"""Rule measure_corruptions_teacher / _student: one model's accuracy on every corruption set."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.measure_corruptions(snakemake.input, snakemake.output, snakemake.params)
