"""Rule recolour_teacher: a re-coloured teacher's embeddings, derived from its base teacher's."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.recolour_teacher(snakemake.input, snakemake.output, snakemake.params)
