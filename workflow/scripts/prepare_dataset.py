"""Rule prepare_dataset: archive -> uint8 arrays, labels and class names."""

from kdspectra import stages
from kdspectra.runtime.logs import job

# The dataset's config entry is no param (see data.smk): a new mirror URL must not rerun it.
params = {**snakemake.params, "source": snakemake.config["datasets"][snakemake.params.dataset]}
with job(snakemake.log[0], snakemake.threads, times=snakemake.log.get("times")):
    stages.prepare_dataset(snakemake.input, snakemake.output, params)
