"""One function per workflow rule, named like the rule: the glue between paths and library.

Convention: ``stages/<file>.py`` implements the rules of ``workflow/rules/<file>.smk``
(``data``, ``teachers``, ``distill``, ``evaluate``, ``corruptions``, ``report``); what
several of them share lives in ``stages/_common.py``. Every rule's function takes
``(inputs, outputs, params)``: mappings from the names the rule gives its inputs, outputs
and params (Snakemake's ``snakemake.input``/``output``/``params``, or plain dicts in tests)
to their values, and is named like its rule (rules that share one script, such as
``data_table`` and ``geometry_table`` with ``table.py``, get an alias of that script's
stage). This package re-exports every stage by its rule name, so a script only does
``from kdspectra import stages; stages.<rule>(snakemake.input, snakemake.output,
snakemake.params)`` after setting up logging: everything a rule does is reachable (and
tested) without Snakemake. ``tests/test_stages.py`` checks that each rule's script calls
the stage of its name, from the module of its rule file. Heavy imports (torch,
open_clip, timm, sklearn) happen inside the functions that need them.
"""

from __future__ import annotations

from kdspectra.report.columns import (
    CORRUPTION_COLUMNS,
    RUN_KEYS,
    SPECTRUM_KEYS,
    knn_columns,
    model_keys,
)
from kdspectra.stages._common import Named, PathLike, load_split
from kdspectra.stages.corruptions import (
    collect_corruptions,
    corruption_table,
    corruptions_fixture,
    download_corruptions,
    fig5,
    measure_corruptions,
)
from kdspectra.stages.data import download, prepare_dataset
from kdspectra.stages.distill import embed_student, train_student
from kdspectra.stages.evaluate import (
    KNN_K,
    KNN_TEMPERATURE,
    collect,
    measure_model,
)
from kdspectra.stages.report import (
    claims,
    data_table,
    fig4_data,
    fig6_mirror,
    fig7_tradeoff,
    figure,
    geometry_table,
    paper_comparison,
    resolved_config,
    table,
    table_html,
    verdict_summary,
)
from kdspectra.stages.teachers import (
    extract_teacher,
    extract_teacher_noisy,
    extract_teacher_views,
    pretrain_teacher,
    recolour_teacher,
)

__all__ = [
    "CORRUPTION_COLUMNS",
    "KNN_K",
    "KNN_TEMPERATURE",
    "RUN_KEYS",
    "SPECTRUM_KEYS",
    "Named",
    "PathLike",
    "claims",
    "collect",
    "collect_corruptions",
    "corruption_table",
    "corruptions_fixture",
    "data_table",
    "download",
    "download_corruptions",
    "embed_student",
    "extract_teacher",
    "extract_teacher_noisy",
    "extract_teacher_views",
    "fig4_data",
    "fig5",
    "fig6_mirror",
    "fig7_tradeoff",
    "figure",
    "geometry_table",
    "knn_columns",
    "load_split",
    "measure_corruptions",
    "measure_model",
    "model_keys",
    "paper_comparison",
    "prepare_dataset",
    "pretrain_teacher",
    "recolour_teacher",
    "resolved_config",
    "table",
    "table_html",
    "train_student",
    "verdict_summary",
]
