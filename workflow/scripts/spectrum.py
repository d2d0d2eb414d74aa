"""Rule spectrum: singular values and effective rank of one model's test embeddings."""

from kdspectra.logs import log_to
from kdspectra.stages import spectrum

with log_to(snakemake.log[0]):
    spectrum(
        snakemake.input.test,
        snakemake.output.values,
        snakemake.output.stats,
        snakemake.input.get("teacher"),
    )
