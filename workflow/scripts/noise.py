"""Rule noise: linear-probe accuracy of one model under every Gaussian noise level."""

from kdspectra.logs import log_to
from kdspectra.stages import noise

with log_to(snakemake.log[0]):
    noise(
        snakemake.input.train,
        snakemake.input.train_labels,
        snakemake.input.noisy,
        snakemake.input.test_labels,
        snakemake.params.sigmas,
        snakemake.params.seed,
        snakemake.output[0],
    )
