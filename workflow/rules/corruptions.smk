# Corruption stage (issue 17): CIFAR-10-C / CIFAR-100-C, 19 corruptions x 5 severities,
# scored for every model with the noise stage's clean-fitted probe and kNN. Only when
# evaluation.corruptions names any (the rules exist always; `all` asks for their outputs
# through kdspectra.report.plan). The archive is read member by member, checked whole
# before any embedding (kdspectra.data.corruptions). The teacher is measured once per dataset
# and teacher (its probe is fitted on the same clean rows in every experiment), as for noise.
# download_corruptions: like `download` (data.smk), localrule and `retries: 0`.


include: "corruptions/functions.smk"


localrules:
    download_corruptions,
    corruptions_fixture,
    collect_corruptions,
    corruption_table,
    fig5,


rule download_corruptions:
    input:
        corruption_local_input,
    output:
        archive="results/downloads/{dataset}-C-{cmd5}.tar",
    log:
        "results/logs/download_corruptions/{dataset}-C-{cmd5}.log",
    wildcard_constraints:
        cmd5=r"[0-9a-f]{32}",
    retries: 0
    conda:
        ENV
    params:
        md5=corruption_md5,
    script:
        "../scripts/download_corruptions.py"


# A synthetic archive in the published layout from a prepared test split, for tests and
# the offline demo (kdspectra.data.corruption_fixture; directory SYNTHETIC-C, NOT CIFAR-C).
# config/demo-corruptions.yaml points its url here with a relative file: URL.
rule corruptions_fixture:
    input:
        test_data_split,
    output:
        archive="results/fixtures/{data_key}-synthetic-C.tar",
    log:
        "results/logs/corruptions_fixture/{data_key}.log",
    conda:
        ENV
    params:
        data_dir="results/data/{data_key}",
    script:
        "../scripts/corruptions_fixture.py"


rule measure_corruptions_teacher:
    input:
        unpack(corruption_teacher_input),
    output:
        accuracy=f"{RUN}/corruptions/teachers/{{dataset}}/{{teacher}}.parquet",
    log:
        f"{RUN}/logs/measure_corruptions/teachers/{{dataset}}/{{teacher}}.log",
        times=f"{RUN}/benchmarks/measure_corruptions/teachers/{{dataset}}/{{teacher}}.tsv",
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=corruption_mem,
        runtime=corruption_teacher_runtime,
    params:
        spec=lambda wc: teacher_spec(wc.teacher),
        device=training_device(),
        batch_size=lambda wc: int(teacher_spec(wc.teacher).get("batch_size") or 256),
        corruptions=config["evaluation"]["corruptions"],
        severities=config["evaluation"]["corruption_severities"],
        probe=probe_options(config["evaluation"]),
        knn_k=config["evaluation"]["knn_k"],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/measure_corruptions.py"


rule measure_corruptions_student:
    input:
        unpack(corruption_student_input),
    output:
        accuracy=f"{RUN}/corruptions/students/{STUDENT_KEY}.parquet",
    log:
        f"{RUN}/logs/measure_corruptions/students/{STUDENT_KEY}.log",
        times=f"{RUN}/benchmarks/measure_corruptions/students/{STUDENT_KEY}.tsv",
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
        mem_mb=corruption_mem,
        runtime=corruption_student_runtime,
    params:
        device=training_device(),
        batch_size=config["training"]["embed_batch_size"],
        corruptions=config["evaluation"]["corruptions"],
        severities=config["evaluation"]["corruption_severities"],
        probe=probe_options(config["evaluation"]),
        knn_k=config["evaluation"]["knn_k"],
        knn_temperature=config["evaluation"]["knn_temperature"],
    script:
        "../scripts/measure_corruptions.py"


rule collect_corruptions:
    input:
        [r["path"] for r in corruption_records()] if CORRUPTIONS_ON else [],
    output:
        corruptions=f"{RUN}/corruptions.parquet",
    log:
        f"{RUN}/logs/collect_corruptions.log",
    conda:
        ENV
    params:
        records=corruption_records(),
    script:
        "../scripts/collect_corruptions.py"


rule corruption_table:
    input:
        corruptions=f"{RUN}/corruptions.parquet",
        summary=f"{RUN}/summary.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        csv=report(
            f"{RUN}/tables/corruptions.csv",
            caption="../report/corruptions.rst",
            category="Tables",
        ),
        md=f"{RUN}/tables/corruptions.md",
        provenance=f"{RUN}/tables/corruptions.provenance.json",
    log:
        f"{RUN}/logs/tables/corruptions.log",
    conda:
        ENV
    params:
        options={},
        provenance=provenance(),
    script:
        "../scripts/corruption_table.py"


rule fig5:
    input:
        corruptions=f"{RUN}/corruptions.parquet",
        noise=f"{RUN}/noise.parquet",
        teacher_meta=list(teacher_metas().values()),
    output:
        png=report(
            f"{RUN}/figures/fig5_corruptions.png",
            caption="../report/fig5.rst",
            category="Figures",
        ),
        pdf=f"{RUN}/figures/fig5_corruptions.pdf",
    log:
        f"{RUN}/logs/figures/fig5_corruptions.log",
    conda:
        ENV
    params:
        options={
            "experiment": config["report"]["figures"],
            "teacher": experiment(config["report"]["figures"])["teacher"],
        },
        provenance=provenance(),
    script:
        "../scripts/fig5.py"
