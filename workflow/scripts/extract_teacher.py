"""Rule extract_teacher: teacher embeddings of train and test, metadata, sanity metrics."""

from kdspectra.logs import log_to
from kdspectra.stages import extract_teacher

with log_to(snakemake.log[0]):
    extract_teacher(
        snakemake.params.spec,
        snakemake.params.device,
        snakemake.params.data_dir,
        dict(snakemake.output.items()),
        probe_seed=snakemake.params.probe_seed,
    )
