# Config validation, path helpers and input functions shared by every stage.
import os
import re
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
# Jobs (local, --use-conda or SLURM) import kdspectra from this checkout. This sets the
# variable for child processes; the workflow requires no environment variable of the user.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
)

from kdspectra.config import (
    data_key,
    dataset_format,
    dataset_of_key,
    enabled_experiments,
    experiment_models,
    experiment_students,
    experiment_training,
    load_schema,
    needs_download,
    probe_options,
    validate_config,
)
from kdspectra.dials import base_teacher, is_recoloured
from kdspectra.runtime import resources as req
from kdspectra.runtime.device import FALLBACK_ENV
from kdspectra.errors import ConfigError
from kdspectra.report.provenance import config_hash, git_commit
from kdspectra.registry import (
    TEACHER_MODEL,
    ModelId,
    objective_names,
    objective_pattern,
)
from kdspectra.report import options as report_options
from kdspectra.report.plan import plan_report
from snakemake.logging import logger

try:
    _resolved = validate_config(
        config,
        load_schema(Path(workflow.basedir) / "src/kdspectra/config.schema.yaml"),
    )
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_resolved)

RUN = f"results/{config['name']}"
DATA = "results/data"
ENV = "../../envs/kdspectra.yaml"
# GPU rules ask the scheduler for one GPU unless the run is pinned to the CPU (on a
# cluster the submit host has no GPU, so `auto` must still request one).
GPU = 0 if config["device"] == "cpu" else 1
# The jobs check CUDA themselves (kdspectra.runtime.device.resolve_device); `allow_cpu_fallback`
# reaches them as the environment variable every job inherits from this process (local
# jobs directly, SLURM jobs through sbatch, which exports the submitter's environment).
if config["allow_cpu_fallback"]:
    os.environ[FALLBACK_ENV] = "1"
# Threads of the torch rules; embedding is light, so it never holds more than 2.
TORCH_THREADS = config["threads"]
EMBED_THREADS = min(2, TORCH_THREADS)
MODEL_RE = f"{TEACHER_MODEL}|{ModelId.pattern()}"
# Extracted and re-coloured teachers (kdspectra.dials) write the same files under
# embeddings/; the two wildcards keep their rules apart, so a derived teacher is never
# extracted and an extracted one never derived. "(?!)" matches nothing (no dial).
EXTRACTED_RE = "|".join(
    re.escape(t) for t in config["teachers"] if not is_recoloured(config, t)
)
RECOLOURED_RE = "|".join(
    re.escape(t) for t in config["teachers"] if is_recoloured(config, t)
)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    # Prepared data and downloads: <dataset>-<md5>, or <dataset> for built-in sets.
    data_key=r"[A-Za-z0-9_]+(-[0-9a-f]{32})?",
    teacher=EXTRACTED_RE,
    recoloured=RECOLOURED_RE or "(?!)",
    experiment=r"[A-Za-z0-9_]+",
    student=r"[a-z_]+",
    objective=objective_pattern(),
    seed=r"[0-9]+",
    model=MODEL_RE,
    table=r"table1|table2|ablation",


# ---------------------------------------------------------------- paths


def data_dir(dataset):
    """Prepared data of the config's ``dataset``, named by content (kdspectra.config.data_key)."""
    return f"{DATA}/{data_key(config, dataset)}"


def split_files(dataset, splits=("train", "test")):
    return [
        f"{data_dir(dataset)}/{s}_{kind}.npy"
        for s in splits
        for kind in ("images", "labels")
    ]


def dataset_name(wildcards):
    """The config's dataset behind the data rules' ``{data_key}`` wildcard."""
    return dataset_of_key(config, wildcards.data_key)


def teacher_dir(dataset, teacher):
    return f"{RUN}/embeddings/{dataset}/{teacher}"


# One student run: <experiment>/<student>/<objective>/seed<k>, as wildcards for the rules.
STUDENT_KEY = "{experiment}/{student}/{objective}/seed{seed}"
STUDENT = f"{RUN}/students/{STUDENT_KEY}"


# Resume state of a training job; not an output: Snakemake would delete it on failure.
CHECKPOINT = f"{RUN}/checkpoints/{STUDENT_KEY}.pt"


def student_dir(experiment, student, objective, seed):
    return STUDENT.format(
        experiment=experiment, student=student, objective=objective, seed=seed
    )


def checkpoint_path(wildcards):
    """The training job's checkpoint (CHECKPOINT filled with the job's wildcards)."""
    return CHECKPOINT.format(**wildcards)


def experiment(name):
    return config["experiments"][name]


def teacher_spec(name):
    """The teacher's config entry plus its name, so errors can name the config key."""
    return {**config["teachers"][name], "name": name}


def model_dir(exp, model):
    """Directory holding the embeddings of ``model`` (teacher or student) in ``exp``."""
    e = experiment(exp)
    if model == "teacher":
        return teacher_dir(e["dataset"], e["teacher"])
    return f"{RUN}/students/{exp}/{model}"


def model_meta(exp, model):
    return f"{model_dir(exp, model)}/meta.json"


# ---------------------------------------------------------------- input functions


def archive_input(wildcards):
    if needs_download(config, dataset_name(wildcards)):
        return f"results/downloads/{wildcards.data_key}.tar.gz"
    return []


def dataset_input(wildcards):
    return split_files(wildcards.dataset)


def train_data_input(wildcards):
    return split_files(wildcards.dataset, ("train",))


def test_data_input(wildcards):
    return split_files(wildcards.dataset, ("test",))


def teacher_targets(dataset, teacher):
    """The training targets: clean train embeddings, or the K cached views' embeddings."""
    name = "train_views" if config["training"]["teacher_view"] == "same" else "train"
    return f"{teacher_dir(dataset, teacher)}/{name}.npy"


def train_student_input(wildcards):
    e = experiment(wildcards.experiment)
    inputs = {
        "data": split_files(e["dataset"], ("train",)),
        "teacher": teacher_targets(e["dataset"], e["teacher"]),
        "teacher_meta": f"{teacher_dir(e['dataset'], e['teacher'])}/meta.json",
    }
    # Geometry tracked in training compares with the clean rows, not the cached views.
    training = config["training"]
    if training["teacher_view"] == "same" and training.get("track_every") != 0:
        inputs["teacher_clean"] = f"{teacher_dir(e['dataset'], e['teacher'])}/train.npy"
    return inputs


def spectrum_input(wildcards):
    e = experiment(wildcards.experiment)
    inputs = {
        "test": f"{model_dir(wildcards.experiment, wildcards.model)}/test.npy",
        # Row count check: embeddings from another split or run must not reach a table.
        "labels": f"{data_dir(e['dataset'])}/test_labels.npy",
        # The guards' constant predictor: the teacher's normalised train mean.
        "teacher_train": f"{teacher_dir(e['dataset'], e['teacher'])}/train.npy",
        # The digests its extraction recorded, which the teacher's files must still match.
        "teacher_meta": f"{teacher_dir(e['dataset'], e['teacher'])}/meta.json",
    }
    if wildcards.model != "teacher":
        inputs["teacher"] = f"{teacher_dir(e['dataset'], e['teacher'])}/test.npy"
        # feature_width: the student's rank ceiling
        inputs["meta"] = model_meta(wildcards.experiment, wildcards.model)
    return inputs


def noise_input(wildcards):
    e = experiment(wildcards.experiment)
    d = model_dir(wildcards.experiment, wildcards.model)
    return {
        "train": f"{d}/train.npy",
        "noisy": f"{d}/test_noisy.npy",
        "train_labels": f"{data_dir(e['dataset'])}/train_labels.npy",
        "test_labels": f"{data_dir(e['dataset'])}/test_labels.npy",
    }


def measure_input(wildcards):
    """Rule measure_model's inputs: the spectrum's and the noise probe's (disjoint keys)."""
    return spectrum_input(wildcards) | noise_input(wildcards)


def collect_records():
    """One record per (experiment, model): where its metrics live."""
    records = []
    for exp in enabled_experiments(config):
        e = experiment(exp)
        for model in experiment_models(config, exp):
            records.append(
                {
                    "experiment": exp,
                    "dataset": e["dataset"],
                    "teacher": e["teacher"],
                    "model": model,
                    "spectrum": f"{RUN}/spectra/{exp}/{model}.json",
                    "noise": f"{RUN}/noise/{exp}/{model}.parquet",
                    "meta": model_meta(exp, model),
                }
            )
    return records


# A re-coloured teacher's folder, written by recolour_teacher. The extraction's files, the
# map's record, and the cached views when training uses them.
RECOLOURED = f"{RUN}/embeddings/{{dataset}}/{{recoloured}}"


def recolour_outputs():
    files = {
        "train": "train.npy",
        "test": "test.npy",
        "train_parquet": "train.parquet",
        "test_parquet": "test.parquet",
        "noisy": "test_noisy.npy",
        "meta": "meta.json",
        "sanity": "sanity.json",
        "recolour": "recolour.json",
    }
    if config["training"]["teacher_view"] == "same":
        files |= {"views": "train_views.npy", "views_meta": "train_views.json"}
    return {name: f"{RECOLOURED}/{file}" for name, file in files.items()}


def recolour_cell(wildcards):
    """The derived teacher's ``recolour`` entry: base teacher, alpha, cone, seed."""
    return config["teachers"][wildcards.recoloured]["recolour"]


def recolour_input(wildcards):
    """The base teacher's arrays the map is fitted on and applied to, and the labels."""
    base = teacher_dir(wildcards.dataset, recolour_cell(wildcards)["teacher"])
    inputs = {
        "train": f"{base}/train.npy",
        "test": f"{base}/test.npy",
        "noisy": f"{base}/test_noisy.npy",
        "meta": f"{base}/meta.json",
        "train_labels": f"{data_dir(wildcards.dataset)}/train_labels.npy",
        "test_labels": f"{data_dir(wildcards.dataset)}/test_labels.npy",
    }
    if config["training"]["teacher_view"] == "same":
        inputs |= {
            "views": f"{base}/train_views.npy",
            "views_meta": f"{base}/train_views.json",
        }
    return inputs


def collect_input(wildcards):
    return [r[k] for r in collect_records() for k in ("spectrum", "noise", "meta")]


def fig4_input(wildcards):
    """Every run of the figures experiment that Figure 4 draws: metrics and meta, paired."""
    exp, built = config["report"]["figures"], REPORT.include["fig4"]
    dirs = [
        model_dir(exp, ModelId(s, o, k).format())
        for s in built["students"]
        for o in built["objectives"]
        for k in config["seeds"]
    ]
    return {
        "metrics": [f"{d}/metrics.csv" for d in dirs],
        "meta": [f"{d}/meta.json" for d in dirs],
        # The footers name the weights each teacher's meta.json says were loaded.
        "teacher_meta": list(teacher_metas().values()),
    }


def fig1_input(wildcards):
    exp = config["report"]["tables"]
    student = config["report"]["fig1_student"]
    models = [TEACHER_MODEL] + [
        ModelId(student, o, k).format()
        for o in objective_names()
        for k in config["seeds"]
    ]
    return [f"{RUN}/spectra/{exp}/{m}.parquet" for m in models]


# ---------------------------------------------------------------- params


def training_device():
    return config["device"]


def teacher_metas():
    """Teacher -> its meta.json, which records the weights the extract stage loaded. A
    re-coloured teacher loaded none: its base stands for it (one footer entry per
    network, not one per dial cell)."""
    metas = {}
    for exp in enabled_experiments(config):
        e = experiment(exp)
        teacher = base_teacher(config, e["teacher"])
        metas[teacher] = f"{teacher_dir(e['dataset'], teacher)}/meta.json"
    return metas


def provenance():
    """Commit, config hash and the teachers' meta.json, stamped on every table/figure
    (kdspectra.report.provenance reads the weights actually loaded from the meta.json).
    """
    return {
        "commit": git_commit(workflow.basedir),
        "config_hash": config_hash(config),
        "teacher_meta": teacher_metas(),
    }


def table_options(kind):
    return report_options.table_options(config, REPORT, kind)


# ---------------------------------------------------------------- resources
# Requests derived from the work: kdspectra.runtime.resources holds the formulas, the
# constants and the measured peaks they cover; these pass it a job's config entries and
# Snakemake's input size, threads and attempt (each request grows with `attempt` when
# --retries resubmits a job).


def teacher_mem(passes=1):
    """mem_mb of a teacher rule that embeds its input images ``passes`` times."""
    return lambda wildcards, input, attempt: req.teacher_job_mem_mb(
        teacher_spec(wildcards.teacher),
        input.size_mb,
        passes=passes,
        gpu=bool(GPU),
        attempt=attempt,
    )


def teacher_runtime(passes=1):
    """runtime (minutes) of a teacher rule that embeds its input ``passes`` times."""
    return lambda wildcards, input, threads, attempt: req.teacher_job_runtime_min(
        teacher_spec(wildcards.teacher),
        input.size_mb,
        passes=passes,
        threads=threads,
        gpu=bool(GPU),
        attempt=attempt,
    )


def student_mem(wildcards, input, attempt):
    return req.student_job_mem_mb(
        config["training"],
        wildcards.student,
        input.size_mb,
        gpu=bool(GPU),
        attempt=attempt,
    )


def student_runtime(wildcards, input, threads, attempt):
    return req.student_job_runtime_min(
        config["training"],
        wildcards.student,
        input.size_mb,
        threads=threads,
        gpu=bool(GPU),
        attempt=attempt,
    )


def array_mem(copies):
    """mem_mb of a rule without torch that holds ``copies`` x its inputs."""
    return lambda wildcards, input, attempt: req.array_mem_mb(
        input.size_mb, copies=copies, attempt=attempt
    )


def array_runtime(minutes_per_gb):
    return lambda wildcards, input, attempt: req.array_runtime_min(
        input.size_mb, minutes_per_gb=minutes_per_gb, attempt=attempt
    )


# ---------------------------------------------------------------- targets

TABLES = ["table1", "table2", "ablation"]
FIGURES = [
    "fig1_spectrum",
    "fig2_effective_rank",
    "fig3_noise_robustness",
    "fig4_dynamics",
]
# Which tables and figures the enabled experiments can fill; the rest are left out of
# `all`, each with a note here and in paper_comparison.md and claims.md.
REPORT = plan_report(config)
for _note in REPORT.omitted:
    logger.warning(f"report: left out {_note}")


def final_targets():
    targets = [f"{RUN}/config.resolved.yaml", f"{RUN}/tables/paper_comparison.md"]
    targets += [f"{RUN}/tables/claims.{ext}" for ext in ("csv", "md")]
    tables = [t for t in TABLES if REPORT.has(t)]
    targets += [
        f"{RUN}/tables/{t}.{ext}" for t in tables for ext in ("csv", "md", "tex")
    ]
    data = [t for t in ("teachers", "fig2", "fig3", "fig4") if REPORT.has(t)]
    targets += [f"{RUN}/tables/{t}.csv" for t in data]
    if REPORT.has("geometry"):
        targets += [f"{RUN}/tables/geometry.{ext}" for ext in ("csv", "md")]
    if REPORT.has("corruptions"):
        targets += [f"{RUN}/tables/corruptions.{ext}" for ext in ("csv", "md")]
        targets += [f"{RUN}/figures/fig5_corruptions.{ext}" for ext in ("png", "pdf")]
    figures = [f for f in FIGURES if REPORT.has(FIGURE_TABLES.get(f, f))]
    targets += [f"{RUN}/figures/{f}.{ext}" for f in figures for ext in ("png", "pdf")]
    if REPORT.has("fig7"):  # more than one InfoNCE arm: Figure 7 and its data
        targets += [f"{RUN}/figures/fig7_tradeoff.{ext}" for ext in ("png", "pdf")]
    for exp in enabled_experiments(config):
        e = experiment(exp)
        targets.append(f"{teacher_dir(e['dataset'], e['teacher'])}/sanity.json")
    if MIRROR["cells"]:  # a run with a recolour dial: Figure 6 and its data
        targets += [f"{RUN}/figures/fig6_mirror.{ext}" for ext in ("png", "pdf")]
    return targets + report_pages(targets)  # the tables as HTML pages (rule table_html)


def table_labels(table, kind):
    """Report labels of one table's page (kind "html") or file ("csv", "md")."""
    _, name, shows = TABLE_INFO[table]
    return {"table": name, "shows": shows, "format": kind}


def table_sources(targets):
    """Table name -> the file its report page renders: the Markdown when the run builds
    one (it carries the notes and the provenance footer), else the CSV."""
    sources = {}
    for path in map(Path, targets):
        if path.parent == Path(RUN, "tables") and path.suffix in (".md", ".csv"):
            if path.suffix == ".md" or path.stem not in sources:
                sources[path.stem] = str(path)
    return sources


def report_pages(targets):
    """The report's own pages for the run's tables, and the landing page's verdicts."""
    pages = [
        f"{RUN}/report/{t}.html" for t in table_sources(targets) if t in TABLE_INFO
    ]
    return [*pages, f"{RUN}/report/verdicts.rst"]


def table_html_input(wildcards):
    return {"table": table_sources(final_targets())[wildcards.table]}


FIGURE_TABLES = {
    "fig2_effective_rank": "fig2",
    "fig3_noise_robustness": "fig3",
    "fig4_dynamics": "fig4",
}


def figure_input(wildcards):
    meta = {"teacher_meta": list(teacher_metas().values())}
    if wildcards.figure == "fig1_spectrum":
        return {"spectra": fig1_input(wildcards)} | meta
    return {"table": f"{RUN}/tables/{FIGURE_TABLES[wildcards.figure]}.csv"} | meta


def figure_options(figure):
    return report_options.figure_options(config, figure)


def paper_comparison_options():
    return report_options.paper_comparison_options(config, REPORT)


def claims_options():
    return report_options.claims_options(config, REPORT)


def tradeoff_options():
    return report_options.tradeoff_options(config, REPORT)


# The recolour dial's cells (kdspectra.dials), for Figure 6 and the mirror claims.
MIRROR = report_options.mirror_options(config)


# --- teachers trained here (rule pretrain_teacher) ---------------------------------
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
