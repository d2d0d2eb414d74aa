# Evaluation stage: per model (teacher included) the singular value spectrum and every
# geometry metric of its test embeddings, and linear-probe and kNN accuracy under noise;
# then one summary table of the whole run.


rule measure_spectrum:
    input:
        unpack(spectrum_input),
    output:
        values=f"{RUN}/spectra/{{experiment}}/{{model}}.parquet",
        stats=f"{RUN}/spectra/{{experiment}}/{{model}}.json",
    log:
        f"{RUN}/logs/measure_spectrum/{{experiment}}/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/measure_spectrum/{{experiment}}/{{model}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=array_mem(copies=6),
        runtime=array_runtime(minutes_per_gb=20),
    params:
        alpha_req_fit=config["evaluation"]["alpha_req_fit"],
    script:
        "../scripts/measure_spectrum.py"


rule measure_noise:
    input:
        unpack(noise_input),
    output:
        accuracy=f"{RUN}/noise/{{experiment}}/{{model}}.parquet",
    log:
        f"{RUN}/logs/measure_noise/{{experiment}}/{{model}}.log",
    benchmark:
        f"{RUN}/benchmarks/measure_noise/{{experiment}}/{{model}}.tsv"
    conda:
        ENV
    # The probe's BLAS runs on one thread (kdspectra.metrics.probe.BLAS_THREADS): more would
    # only hold cores that another model's probe can use.
    threads: 1
    resources:
        mem_mb=array_mem(copies=6),
        runtime=array_runtime(minutes_per_gb=60),
    params:
        sigmas=config["evaluation"]["noise_sigmas"],
        probe=probe_options(config["evaluation"]),
        knn_k=config["evaluation"]["knn_k"],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/measure_noise.py"


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
