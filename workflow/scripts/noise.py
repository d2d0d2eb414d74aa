"""Rule noise: linear-probe accuracy of one model under every Gaussian noise level."""

from kdspectra.logs import job
from kdspectra.stages import noise

with job(snakemake.log[0], snakemake.threads):
    noise(
        snakemake.input.train,
        snakemake.input.train_labels,
        snakemake.input.noisy,
        snakemake.input.test_labels,
        snakemake.params.sigmas,
        snakemake.params.probe,
        snakemake.output[0],
    )
