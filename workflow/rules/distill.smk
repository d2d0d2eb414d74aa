# Distillation stage: one training job per (experiment, student, objective, seed), then
# the trained student embeds train, test and the noisy test copies (one job, one model
# load) in the teacher's row order.


rule train_student:
    input:
        unpack(train_student_input),
    output:
        weights=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/model.safetensors",
        metrics=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/metrics.csv",
        meta=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/meta.json",
    log:
        f"{RUN}/logs/train/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}.log",
    benchmark:
        f"{RUN}/benchmarks/train/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=student_mem,
        runtime=student_runtime,
    params:
        training=config["training"],
        device=training_device(),
        data_dir=lambda wc: data_dir(experiment(wc.experiment)["dataset"]),
        # Not an output: Snakemake would delete it on failure, and resume needs it.
        checkpoint=lambda wc: f"{RUN}/checkpoints/{wc.experiment}/{wc.student}/{wc.objective}/seed{wc.seed}.pt",
    script:
        "../scripts/train_student.py"


rule embed_student:
    input:
        unpack(embed_student_input),
    output:
        train=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/train.npy",
        test=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/test.npy",
        train_parquet=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/train.parquet",
        test_parquet=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/test.parquet",
        test_noisy=f"{RUN}/students/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}/test_noisy.npy",
    log:
        f"{RUN}/logs/embed_student/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}.log",
    benchmark:
        f"{RUN}/benchmarks/embed_student/{{experiment}}/{{student}}/{{objective}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: EMBED_THREADS
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=30,
    params:
        device=training_device(),
        data_dir=lambda wc: data_dir(experiment(wc.experiment)["dataset"]),
        sigmas=config["evaluation"]["noise_sigmas"],
        seed=config["evaluation"]["noise_seed"],
        batch_size=config["training"]["embed_batch_size"],
    script:
        "../scripts/embed_student.py"
