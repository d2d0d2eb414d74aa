"""Rule pretrain_teacher: train a teacher here on its dataset's train split; weights, meta."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.pretrain_teacher(snakemake.input, snakemake.output, snakemake.params)
