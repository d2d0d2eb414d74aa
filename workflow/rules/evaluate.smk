# Evaluation stage: per model (teacher included), in one job, the singular value spectrum
# and every geometry metric of its test embeddings, and linear-probe and kNN accuracy
# under noise; then one summary table of the whole run.


# One job per model, not two (spectrum, noise): a job's start-up (process, array imports)
# cost about as much as the spectrum itself, and the demo measures ~40 models.
rule measure_model:
    input:
        unpack(measure_input),
    output:
        values=f"{RUN}/spectra/{{experiment}}/{{model}}.parquet",
        stats=f"{RUN}/spectra/{{experiment}}/{{model}}.json",
        accuracy=f"{RUN}/noise/{{experiment}}/{{model}}.parquet",
    log:
        f"{RUN}/logs/measure_model/{{experiment}}/{{model}}.log",
        times=f"{RUN}/benchmarks/measure_model/{{experiment}}/{{model}}.tsv",
    conda:
        ENV
    # The probe's BLAS runs on one thread (kdspectra.metrics.probe.BLAS_THREADS): more would
    # only hold cores that another model's probe can use.
    threads: 1
    resources:
        mem_mb=array_mem(copies=6),
        # the spectrum's 20 and the probes' 60 minutes per GB of inputs
        runtime=array_runtime(minutes_per_gb=80),
    params:
        alpha_req_fit=config["evaluation"]["alpha_req_fit"],
        sigmas=config["evaluation"]["noise_sigmas"],
        probe=probe_options(config["evaluation"]),
        knn_k=config["evaluation"]["knn_k"],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/measure_model.py"


rule collect:
    input:
        collect_input,
    output:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
    log:
        f"{RUN}/logs/collect.log",
    conda:
        ENV
    params:
        records=collect_records(),
    script:
        "../scripts/collect.py"
