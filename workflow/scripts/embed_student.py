"""Rule embed_student: the trained student embeds train, test and the noisy test copies."""

from kdspectra.logs import job
from kdspectra.stages import embed_student

with job(snakemake.log[0], snakemake.threads):
    embed_student(
        snakemake.input.weights,
        snakemake.input.meta,
        snakemake.params.device,
        snakemake.params.data_dir,
        dict(snakemake.output.items()),
        batch_size=snakemake.params.batch_size,
        sigmas=snakemake.params.sigmas,
        noise_seed=snakemake.params.seed,
    )
