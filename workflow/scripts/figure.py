"""Rule figure: render Figure 1, 2 or 3 as PNG and PDF."""

from kdspectra.logs import log_to
from kdspectra.stages import write_figure

with log_to(snakemake.log[0]):
    write_figure(
        snakemake.wildcards.figure,
        dict(snakemake.input.items()),
        snakemake.params.options,
        snakemake.params.provenance,
        dict(snakemake.output.items()),
    )
