"""Rule spectrum: singular values and effective rank of one model's test embeddings."""

from kdspectra.logs import job
from kdspectra.stages import spectrum

with job(snakemake.log[0], snakemake.threads):
    spectrum(
        snakemake.input.test,
        snakemake.output.values,
        snakemake.output.stats,
        snakemake.input.get("teacher"),
        test_labels=snakemake.input.labels,
        meta=snakemake.input.get("meta"),
    )
