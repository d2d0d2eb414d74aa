"""Rule extract_teacher_noisy: teacher embeddings of the test split at every noise level."""

from kdspectra.logs import log_to
from kdspectra.stages import extract_teacher_noisy

with log_to(snakemake.log[0]):
    extract_teacher_noisy(
        snakemake.params.spec,
        snakemake.params.device,
        snakemake.params.data_dir,
        snakemake.params.sigmas,
        snakemake.params.seed,
        snakemake.output[0],
    )
