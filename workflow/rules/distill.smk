# Distillation stage: one job per (experiment, student, objective, seed) trains the
# student and, with the model still in memory, embeds train, test and the noisy test
# copies in the teacher's row order (fp32). One job instead of two saves a process and
# torch start-up per model, the largest cost of a small run.


rule train_student:
    input:
        unpack(train_student_input),
    output:
        weights=f"{STUDENT}/model.safetensors",
        metrics=f"{STUDENT}/metrics.csv",
        meta=f"{STUDENT}/meta.json",
        train=f"{STUDENT}/train.npy",
        test=f"{STUDENT}/test.npy",
        train_parquet=f"{STUDENT}/train.parquet",
        test_parquet=f"{STUDENT}/test.parquet",
        test_noisy=f"{STUDENT}/test_noisy.npy",
    log:
        f"{RUN}/logs/train/{STUDENT_KEY}.log",
        times=f"{RUN}/benchmarks/train/{STUDENT_KEY}.tsv",
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=student_mem,
        runtime=student_runtime,
    params:
        student=lambda wc: wc.student,
        objective=lambda wc: wc.objective,
        seed=lambda wc: int(wc.seed),
        # the experiment's own λ sweep / projector merged over training.infonce, if any
        training=lambda wc: experiment_training(config, wc.experiment),
        device=training_device(),
        data_dir=lambda wc: data_dir(experiment(wc.experiment)["dataset"]),
        checkpoint=checkpoint_path,
        sigmas=config["evaluation"]["noise_sigmas"],
        noise_seed=config["evaluation"]["noise_seed"],
        embed_batch_size=config["training"]["embed_batch_size"],
    script:
        "../scripts/train_student.py"
