"""Rule paper_comparison: every number of the paper beside ours."""

from kdspectra.logs import job
from kdspectra.stages import write_paper_comparison

with job(snakemake.log[0], snakemake.threads):
    write_paper_comparison(
        snakemake.input.summary,
        snakemake.input.noise,
        snakemake.params.options,
        snakemake.params.provenance,
        snakemake.output[0],
    )
