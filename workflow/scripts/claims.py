"""Rule claims: each claim of the paper judged on this run -> claims.{csv,md}."""

from kdspectra.logs import job
from kdspectra.stages import write_claims

with job(snakemake.log[0], snakemake.threads):
    write_claims(
        snakemake.input.summary,
        snakemake.input.noise,
        snakemake.params.options,
        snakemake.params.provenance,
        dict(snakemake.output.items()),
    )
