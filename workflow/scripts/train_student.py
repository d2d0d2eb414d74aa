"""Rule train_student: distil one student; resumes from its checkpoint after a kill."""

from kdspectra.logs import log_to
from kdspectra.stages import train

w = snakemake.wildcards
with log_to(snakemake.log[0]):
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
