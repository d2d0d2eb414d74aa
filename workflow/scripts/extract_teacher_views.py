"""Rule extract_teacher_views: teacher embeddings of K cached, seeded views per train image."""

from kdspectra.logs import job
from kdspectra.stages import extract_teacher_views

with job(snakemake.log[0], snakemake.threads):
    extract_teacher_views(
        snakemake.params.spec,
        snakemake.params.device,
        snakemake.params.data_dir,
        snakemake.params.views,
        dict(snakemake.output.items()),
    )
