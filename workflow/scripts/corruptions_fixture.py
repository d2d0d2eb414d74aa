"""Rule corruptions_fixture: a synthetic (NOT CIFAR-C) corruption archive of a test split."""

from kdspectra import stages
from kdspectra.runtime.logs import job

with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.corruptions_fixture(snakemake.input, snakemake.output, snakemake.params)
