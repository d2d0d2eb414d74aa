# Teacher stage: pretrain the teachers this pipeline trains itself (`pretrain:` in their
# spec), then embed the train and test splits (and the noisy test copies) once per
# (dataset, teacher); every student of every experiment on that pair reuses them.


rule pretrain_teacher:
    input:
        unpack(pretrain_input),
    output:
        weights=TEACHER_WEIGHTS,
        meta=f"{RUN}/teachers/{{teacher}}/meta.json",
    log:
        f"{RUN}/logs/pretrain_teacher/{{teacher}}.log",
        times=f"{RUN}/benchmarks/pretrain_teacher/{{teacher}}.tsv",
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
        times=f"{RUN}/benchmarks/extract_teacher/{{dataset}}/{{teacher}}.tsv",
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
        times=f"{RUN}/benchmarks/extract_teacher_noisy/{{dataset}}/{{teacher}}.tsv",
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
        times=f"{RUN}/benchmarks/extract_teacher_views/{{dataset}}/{{teacher}}.tsv",
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


# The mirror dial (experiments.<e>.recolour): a re-coloured teacher's files are derived
# from its base teacher's by one invertible map fitted on the base's train rows
# (kdspectra.models.recolour), never extracted; recolour.json records the map.
rule recolour_teacher:
    input:
        unpack(recolour_input),
    output:
        **recolour_outputs(),
    log:
        f"{RUN}/logs/recolour_teacher/{{dataset}}/{{recoloured}}.log",
        times=f"{RUN}/benchmarks/recolour_teacher/{{dataset}}/{{recoloured}}.tsv",
    conda:
        ENV
    threads: 1
    resources:
        # base and new arrays in float64, and the sanity probe
        mem_mb=array_mem(copies=6),
        runtime=array_runtime(minutes_per_gb=60),
    params:
        recolour=recolour_cell,
        probe=probe_options(config["evaluation"]),
        knn_k=config["evaluation"]["knn_k"][0],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/recolour_teacher.py"
