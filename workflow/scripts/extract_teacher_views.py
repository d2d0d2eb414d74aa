"""Rule extract_teacher_views: teacher embeddings of K cached, seeded views per train image."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.extract_teacher_views(snakemake.input, snakemake.output, snakemake.params)
