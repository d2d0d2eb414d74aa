"""Rule train_student: distil one student (resuming after a kill), then embed with it."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.train_student(snakemake.input, snakemake.output, snakemake.params)
