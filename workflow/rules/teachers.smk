# Teacher stage: pretrain the teachers this pipeline trains itself (`pretrain:` in their
# spec), then embed the train and test splits (and the noisy test copies) once per
# (dataset, teacher); every student of every experiment on that pair reuses them.

# A teacher trained here: its weights, meta and (not an output: Snakemake would delete it
# on failure) the resume state of its pretraining.
TEACHER_WEIGHTS = f"{RUN}/teachers/{{teacher}}/model.safetensors"
TEACHER_CHECKPOINT = f"{RUN}/checkpoints/teachers/{{teacher}}.pt"


def pretrain_spec(wildcards):
    """The teacher's `pretrain` entry (schema defaults filled); an error names the key."""
    pre = config["teachers"][wildcards.teacher].get("pretrain")
    if pre is None:
        raise WorkflowError(
            f"config key 'teachers.{wildcards.teacher}.pretrain': none, so rule "
            "pretrain_teacher has nothing to train"
        )
    return pre


def pretrain_input(wildcards):
    """The train split of the teacher's pretraining dataset and its class names; no test."""
    dataset = pretrain_spec(wildcards)["dataset"]
    return {
        "data": split_files(dataset, ("train",)),
        "classes": f"{data_dir(dataset)}/classes.txt",
    }


def teacher_weights_input(wildcards):
    """The weights rule pretrain_teacher writes, for a teacher trained here; else none."""
    if "pretrain" in config["teachers"][wildcards.teacher]:
        return TEACHER_WEIGHTS.format(teacher=wildcards.teacher)
    return []


def _pretrain_work(wildcards):
    """What sizes a pretraining job: views per image, tokens and the ViT's shape."""
    pre = pretrain_spec(wildcards)
    size = int(teacher_spec(wildcards.teacher).get("image_size") or 32)
    return {
        "views": 1 if pre["objective"] == "clip" else 2,
        "tokens": (size // pre["patch_size"]) ** 2 + 1,
        "embed_dim": pre["embed_dim"],
        "depth": pre["depth"],
        "gpu": bool(GPU),
    }


def pretrain_mem(wildcards, input, attempt):
    pre = pretrain_spec(wildcards)
    return req.pretrain_mem_mb(
        input.size_mb,
        batch_size=pre["batch_size"],
        num_heads=pre["num_heads"],
        attempt=attempt,
        **_pretrain_work(wildcards),
    )


def pretrain_runtime(wildcards, input, threads, attempt):
    return req.pretrain_runtime_min(
        input.size_mb,
        epochs=pretrain_spec(wildcards)["epochs"],
        threads=threads,
        attempt=attempt,
        **_pretrain_work(wildcards),
    )


rule pretrain_teacher:
    input:
        unpack(pretrain_input),
    output:
        weights=TEACHER_WEIGHTS,
        meta=f"{RUN}/teachers/{{teacher}}/meta.json",
    log:
        f"{RUN}/logs/pretrain_teacher/{{teacher}}.log",
    benchmark:
        f"{RUN}/benchmarks/pretrain_teacher/{{teacher}}.tsv"
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=pretrain_mem,
        runtime=pretrain_runtime,
    params:
        spec=lambda wc: teacher_spec(wc.teacher),
        device=training_device(),
        data_dir=lambda wc: data_dir(pretrain_spec(wc)["dataset"]),
        checkpoint=lambda wc: TEACHER_CHECKPOINT.format(teacher=wc.teacher),
    script:
        "../scripts/pretrain_teacher.py"


rule extract_teacher:
    input:
        data=dataset_input,
        weights=teacher_weights_input,
    output:
        train=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/train.npy",
        test=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/test.npy",
        train_parquet=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/train.parquet",
        test_parquet=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/test.parquet",
        meta=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/meta.json",
        sanity=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/sanity.json",
    log:
        f"{RUN}/logs/extract_teacher/{{dataset}}/{{teacher}}.log",
    benchmark:
        f"{RUN}/benchmarks/extract_teacher/{{dataset}}/{{teacher}}.tsv"
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=teacher_mem(),
        runtime=teacher_runtime(),
    params:
        spec=lambda wc: teacher_spec(wc.teacher),
        device=training_device(),
        data_dir=lambda wc: data_dir(wc.dataset),
        probe=probe_options(config["evaluation"]),
        # sanity.json's kNN: the first configured k, as the corruption stage's
        knn_k=config["evaluation"]["knn_k"][0],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/extract_teacher.py"


rule extract_teacher_noisy:
    input:
        data=test_data_input,
        weights=teacher_weights_input,
    output:
        noisy=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/test_noisy.npy",
    log:
        f"{RUN}/logs/extract_teacher_noisy/{{dataset}}/{{teacher}}.log",
    benchmark:
        f"{RUN}/benchmarks/extract_teacher_noisy/{{dataset}}/{{teacher}}.tsv"
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=teacher_mem(passes=len(config["evaluation"]["noise_sigmas"])),
        runtime=teacher_runtime(passes=len(config["evaluation"]["noise_sigmas"])),
    params:
        spec=lambda wc: teacher_spec(wc.teacher),
        device=training_device(),
        data_dir=lambda wc: data_dir(wc.dataset),
        sigmas=config["evaluation"]["noise_sigmas"],
        seed=config["evaluation"]["noise_seed"],
    script:
        "../scripts/extract_teacher_noisy.py"


# Only for `training.teacher_view: same`: the teacher embeds K seeded views of every train
# image (K x the train extraction) that training replays exactly.
rule extract_teacher_views:
    input:
        data=train_data_input,
        weights=teacher_weights_input,
    output:
        views=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/train_views.npy",
        meta=f"{RUN}/embeddings/{{dataset}}/{{teacher}}/train_views.json",
    log:
        f"{RUN}/logs/extract_teacher_views/{{dataset}}/{{teacher}}.log",
    benchmark:
        f"{RUN}/benchmarks/extract_teacher_views/{{dataset}}/{{teacher}}.tsv"
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=teacher_mem(passes=config["training"]["teacher_views_k"]),
        runtime=teacher_runtime(passes=config["training"]["teacher_views_k"]),
    params:
        spec=lambda wc: teacher_spec(wc.teacher),
        device=training_device(),
        data_dir=lambda wc: data_dir(wc.dataset),
        views={
            k: config["training"][k]
            for k in ("augment", "teacher_views_k", "teacher_views_seed")
        },
    script:
        "../scripts/extract_teacher_views.py"
