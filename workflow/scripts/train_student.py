"""Rule train_student: distil one student (resuming after a kill), then embed with it."""

from kdspectra.logs import job
from kdspectra.stages import train

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads):
    train(
        w.student,
        w.objective,
        int(w.seed),
        p.training,
        p.device,
        p.data_dir,
        snakemake.input.teacher,
        dict(snakemake.output.items()),
        p.checkpoint,
        teacher_meta=snakemake.input.teacher_meta,
        embed={"batch_size": p.embed_batch_size, "sigmas": p.sigmas, "noise_seed": p.noise_seed},
    )
