# Input functions and resource requests of workflow/rules/corruptions.smk, which alone
# uses them and includes this file (`snakemake --lint` wants functions and rules in
# separate files; common.smk keeps what several rule files share).


# ---------------------------------------------------------------- input functions
# corruptions_input also serves report.smk's claims (included after corruptions.smk).
# The download is keyed by content like the datasets'.
from kdspectra.config import corruption_key, corruption_source

CORRUPTIONS_ON = bool(config["evaluation"]["corruptions"])


def corruption_archive(dataset):
    """The verified corruption archive of ``dataset``: <dataset>-C-<md5>.tar."""
    return f"results/downloads/{corruption_key(config, dataset)}.tar"


def corruption_md5(wildcards):
    """The md5 the download must match: the one the path names (whole, not a prefix)."""
    md5 = corruption_source(config, wildcards.dataset)["md5"]
    if not md5.startswith(wildcards.cmd5):
        raise WorkflowError(
            f"results/downloads/{wildcards.dataset}-C-{wildcards.cmd5}.tar: no config "
            f"entry has that md5 (datasets.{wildcards.dataset}.corruptions.md5 is {md5})"
        )
    return md5


def corruption_local_input(wildcards):
    """A relative ``file:`` URL (the demo's fixture) is an input, so that its rule runs first."""
    url = corruption_source(config, wildcards.dataset)["url"]
    return (
        [url.removeprefix("file:")]
        if not url.startswith("file://") and url.startswith("file:")
        else []
    )


def _corruption_common(dataset):
    return {
        "archive": corruption_archive(dataset),
        "train_labels": f"{data_dir(dataset)}/train_labels.npy",
        "test_labels": f"{data_dir(dataset)}/test_labels.npy",
    }


def test_data_split(wildcards):
    """The prepared test split behind a ``{data_key}`` (the corruption fixture's source)."""
    return [
        f"results/data/{wildcards.data_key}/test_{k}.npy" for k in ("images", "labels")
    ]


def corruption_teacher_input(wildcards):
    d = teacher_dir(wildcards.dataset, wildcards.teacher)
    inputs = _corruption_common(wildcards.dataset) | {"train": f"{d}/train.npy"}
    # A teacher trained here (`pretrain:`) is built from the weights pretrain_teacher wrote.
    weights = teacher_weights_input(wildcards)
    return inputs | ({"teacher_weights": weights} if weights else {})


def corruption_student_input(wildcards):
    w = wildcards
    d = student_dir(w.experiment, w.student, w.objective, w.seed)
    return _corruption_common(experiment(wildcards.experiment)["dataset"]) | {
        "train": f"{d}/train.npy",
        "weights": f"{d}/model.safetensors",
        "meta": f"{d}/meta.json",
    }


def corruption_records():
    """One record per (experiment, model): its corruption Parquet (a teacher's serves
    every experiment on its dataset)."""
    records = []
    for exp in enabled_experiments(config):
        e = experiment(exp)
        for model in experiment_models(config, exp):
            if model == TEACHER_MODEL:
                path = f"{RUN}/corruptions/teachers/{e['dataset']}/{e['teacher']}"
                path += ".parquet"
            else:
                path = f"{RUN}/corruptions/students/{exp}/{model}.parquet"
            records.append({"experiment": exp, "model": model, "path": path})
    return records


def corruptions_input(wildcards=None):
    """The run's corruption table, or nothing when the stage is off (claims: not tested)."""
    return f"{RUN}/corruptions.parquet" if CORRUPTIONS_ON else []


# ---------------------------------------------------------------- resources
# kdspectra.runtime.resources: a corruption job holds one member of the archive, and
# embeds the sets the config asks for (its share of the archive's 19 x 5).


def corruption_mem(wildcards, input, attempt):
    return req.corruption_mem_mb(input.size_mb, gpu=bool(GPU), attempt=attempt)


def corruption_teacher_runtime(wildcards, input, threads, attempt):
    return req.teacher_job_runtime_min(
        teacher_spec(wildcards.teacher),
        req.corruption_share_mb(input.size_mb, config["evaluation"]),
        threads=threads,
        gpu=bool(GPU),
        attempt=attempt,
    )


def corruption_student_runtime(wildcards, input, threads, attempt):
    # Training FLOPs of one epoch bound the embedding's (forward only) from above.
    return req.student_job_runtime_min(
        config["training"],
        wildcards.student,
        req.corruption_share_mb(input.size_mb, config["evaluation"]),
        epochs=1,
        threads=threads,
        gpu=bool(GPU),
        attempt=attempt,
    )
