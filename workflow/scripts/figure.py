"""Rule figure: render Figure 1, 2 or 3 as PNG and PDF."""

from kdspectra.logs import job
from kdspectra.stages import write_figure

with job(snakemake.log[0], snakemake.threads):
    write_figure(
        snakemake.wildcards.figure,
        dict(snakemake.input.items()),
        snakemake.params.options,
        snakemake.params.provenance,
        dict(snakemake.output.items()),
    )
