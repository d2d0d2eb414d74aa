"""Rule extract_teacher: teacher embeddings of train and test, metadata, sanity metrics."""

from kdspectra.logs import job
from kdspectra.stages import extract_teacher

with job(snakemake.log[0], snakemake.threads):
    extract_teacher(
        snakemake.params.spec,
        snakemake.params.device,
        snakemake.params.data_dir,
        dict(snakemake.output.items()),
        probe=snakemake.params.probe,
    )
