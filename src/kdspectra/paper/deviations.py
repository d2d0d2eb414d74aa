"""The choices the paper leaves open, and the value this run used for each.

The paper states no optimiser settings, augmentations, teacher-view policy, probe
protocol, seed count, or the σ behind its 21.32 % / 17.03 % noise accuracies. A reader
comparing numbers must see what we chose, so paper_comparison.md opens with this
section, rendered from the run's resolved config (every key of ``training`` and the
probe/noise keys of ``evaluation``, flattened, so a key added to the schema shows up
without touching this module).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Why a key matters, for the keys a reader of the paper will look for first.
WHY = {
    "training.epochs": "the paper gives no schedule",
    "training.batch_size": "not stated in the paper",
    "training.lr": "not stated in the paper",
    "training.weight_decay": "not stated in the paper",
    "training.warmup_epochs": "not stated in the paper",
    "training.infonce.weight": "λ of L_cos + λ·InfoNCE; the paper gives none",
    "training.infonce.temperature": "τ of InfoNCE; the paper gives none",
    "training.augment": "the paper names no augmentation; both objectives see the same "
    "two views from this one pipeline",
    "training.teacher_view": "clean = teacher embeds the clean image (the paper's setup, "
    "as we read it); same = the same augmented view as the student",
    "training.teacher_views_k": "cached teacher views per image (teacher_view: same)",
    "training.per_student": "per-student overrides (transformer students need other "
    "settings than the CNNs)",
    "evaluation.noise_sigmas": "the paper does not say at which σ it reports 21.32 % / "
    "17.03 %; we report at the highest σ configured",
}


def flatten(tree: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """Dotted keys and leaf values of a nested mapping (lists are leaves)."""
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, path)
        else:
            yield path, value


def _why(key: str) -> str:
    """The explanation of ``key`` or of its nearest documented parent."""
    parts = key.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in WHY:
            return WHY[".".join(parts[:n])]
    return ""


def _value(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "–" if value is None else str(value)


def choices(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(config key, value, why it is listed) for every open choice of the run."""
    rows = [("seeds", _value(config["seeds"]), "the paper reports single numbers")]
    rows += [(k, _value(v), _why(k)) for k, v in flatten(config["training"], "training")]
    evaluation = config["evaluation"]
    for key, value in flatten(evaluation, "evaluation"):
        if "probe" in key or "noise" in key:
            rows.append((key, _value(value), _why(key)))
    sigmas = evaluation.get("noise_sigmas") or []
    if sigmas:
        rows.append(
            (
                "σ of the paper's 21.32 % / 17.03 %",
                f"{max(sigmas):g} (highest configured)",
                "the paper does not state it",
            )
        )
    rows.append(
        (
            "headline effective rank",
            "raw rows, centred (paper Eq. 3)",
            "ER of L2-normalised rows is shown beside it, labelled",
        )
    )
    for name, spec in config["teachers"].items():
        rows.append((f"teachers.{name}.pretrained", _value(spec.get("pretrained")), ""))
    return rows


def to_markdown(config: Mapping[str, Any]) -> str:
    """The "Deviations" section of paper_comparison.md."""
    lines = [
        "## Choices the paper leaves open",
        "",
        "Values this run used (from its resolved config, `config.resolved.yaml`).",
        "",
        "| Choice (config key) | This run | Why it is listed |",
        "|:--|:--|:--|",
    ]
    lines += [f"| `{k}` | {v.replace('|', '/')} | {w} |" for k, v, w in choices(config)]
    return "\n".join([*lines, ""])
