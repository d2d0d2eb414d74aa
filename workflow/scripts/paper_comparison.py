"""Rule paper_comparison: every number of the paper beside ours."""

from kdspectra.logs import log_to
from kdspectra.stages import write_paper_comparison

with log_to(snakemake.log[0]):
    write_paper_comparison(
        snakemake.input.summary,
        snakemake.input.noise,
        snakemake.params.options,
        snakemake.params.provenance,
        snakemake.output[0],
    )
