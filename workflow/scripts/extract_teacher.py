"""Rule extract_teacher: teacher embeddings of train and test, metadata, sanity metrics."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.extract_teacher(snakemake.input, snakemake.output, snakemake.params)
