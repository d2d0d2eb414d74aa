"""Rules table and data_table: render one table as CSV (and Markdown/LaTeX when asked)."""

from kdspectra.logs import job
from kdspectra.stages import write_table

kind = snakemake.wildcards.get("table") or snakemake.wildcards.get("data_table")
with job(snakemake.log[0], snakemake.threads):
    write_table(
        kind,
        snakemake.input.summary,
        snakemake.input.noise,
        snakemake.params.options,
        snakemake.params.provenance,
        dict(snakemake.output.items()),
    )
