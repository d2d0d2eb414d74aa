"""Rule extract_teacher_noisy: teacher embeddings of the test split at every noise level."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.extract_teacher_noisy(snakemake.input, snakemake.output, snakemake.params)
