# Data stage: download the archive (submit host: compute nodes often have no internet),
# verify its md5, and prepare uint8 arrays shared by every run. Both are keyed by content,
# {data_key} = <dataset>-<md5> (kdspectra.config.data_key): two configs that give one
# dataset name to different archives never overwrite each other's data, and an md5 typo
# is a new key, so the failed download cannot delete the good archive of the old one
# (docs/design.md: a failed job never leaves fewer good artifacts than before it started). The URL is not a
# param (the scripts read it from the config): Snakemake reruns a job whose params change,
# and fetching the same md5 from another mirror must not redo the download and prepare.
#
# Retries: Snakemake's (`--retries`, the SLURM profile's `retries: 2`) repeat a job whatever
# failed. The download's failures that remain after kdspectra.data.download's own retries
# (connection errors, 5xx and short reads, with exponential backoff) are deterministic:
# checksum mismatch, HTTP 404, a bad URL. So `retries: 0` overrides the profile there.
# prepare_dataset keeps the profile's retries: its input is md5-verified, so what fails it
# on a cluster is memory or time, which grow with `attempt`.


localrules:
    download,


rule download:
    output:
        archive="results/downloads/{data_key}.tar.gz",
    log:
        "results/logs/download/{data_key}.log",
    retries: 0
    conda:
        ENV
    params:
        dataset=dataset_name,
        md5=lambda wc: config["datasets"][dataset_name(wc)]["md5"],
    script:
        "../scripts/download.py"


rule prepare_dataset:
    input:
        archive=archive_input,
    output:
        images=expand(
            "results/data/{{data_key}}/{split}_images.npy", split=["train", "test"]
        ),
        labels=expand(
            "results/data/{{data_key}}/{split}_labels.npy", split=["train", "test"]
        ),
        classes="results/data/{data_key}/classes.txt",
        source="results/data/{data_key}/source.json",
    log:
        "results/logs/prepare/{data_key}.log",
    conda:
        ENV
    resources:
        mem_mb=array_mem(copies=4),
        runtime=array_runtime(minutes_per_gb=10),
    params:
        fmt=lambda wc: dataset_format(config, dataset_name(wc)),
        dataset=dataset_name,
        outdir="results/data/{data_key}",
    script:
        "../scripts/prepare_dataset.py"
