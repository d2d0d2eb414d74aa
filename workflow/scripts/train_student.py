"""Rule train_student: distil one student; resumes from its checkpoint after a kill."""

from kdspectra.logs import job
from kdspectra.stages import train

w = snakemake.wildcards
with job(snakemake.log[0], snakemake.threads):
    train(
        w.student,
        w.objective,
        int(w.seed),
        snakemake.params.training,
        snakemake.params.device,
        snakemake.params.data_dir,
        snakemake.input.teacher,
        dict(snakemake.output.items()),
        snakemake.params.checkpoint,
    )
