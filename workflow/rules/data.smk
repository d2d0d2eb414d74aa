# Data stage: download the archive (submit host: compute nodes often have no internet),
# verify its md5, and prepare uint8 arrays shared by every run.


localrules:
    download,


rule download:
    output:
        "results/downloads/{dataset}.tar.gz",
    log:
        "results/logs/download/{dataset}.log",
    retries: 2
    conda:
        ENV
    params:
        url=lambda wc: config["datasets"][wc.dataset]["url"],
        md5=lambda wc: config["datasets"][wc.dataset]["md5"],
    script:
        "../scripts/download.py"


rule prepare_dataset:
    input:
        archive=archive_input,
    output:
        images=expand(
            "results/data/{{dataset}}/{split}_images.npy", split=["train", "test"]
        ),
        labels=expand(
            "results/data/{{dataset}}/{split}_labels.npy", split=["train", "test"]
        ),
        classes="results/data/{dataset}/classes.txt",
        source="results/data/{dataset}/source.json",
    log:
        "results/logs/prepare/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=array_mem(copies=4),
        runtime=array_runtime(minutes_per_gb=10),
    params:
        fmt=lambda wc: dataset_format(config, wc.dataset),
        source=lambda wc: config["datasets"][wc.dataset],
        outdir=lambda wc: data_dir(wc.dataset),
    script:
        "../scripts/prepare_dataset.py"
