"""Rule extract_teacher_noisy: teacher embeddings of the test split at every noise level."""

from kdspectra.logs import job
from kdspectra.stages import extract_teacher_noisy

with job(snakemake.log[0], snakemake.threads):
    extract_teacher_noisy(
        snakemake.params.spec,
        snakemake.params.device,
        snakemake.params.data_dir,
        snakemake.params.sigmas,
        snakemake.params.seed,
        snakemake.output[0],
    )
