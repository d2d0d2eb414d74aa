"""Names the config may use, importable without torch.

The Snakefile validates the config at parse time, which happens once per job on a
cluster; keeping these lists free of heavy imports keeps that validation instant.
`kdspectra.students`, `kdspectra.losses` and `kdspectra.datasets` build on the same names
(a test checks they agree).
"""

from __future__ import annotations

STUDENTS: tuple[str, ...] = ("cnn_s", "cnn_m", "cnn_l", "hybrid", "tiny_vit")
OBJECTIVES: tuple[str, ...] = ("cosine", "cosine_infonce")
DATASET_FORMATS: tuple[str, ...] = ("cifar10-binary", "cifar100-binary", "sklearn-digits")
TEACHER_LIBRARIES: tuple[str, ...] = ("open_clip", "timm")

# Dataset names that imply their format when `datasets.<name>.format` is not given.
DEFAULT_FORMATS: dict[str, str] = {
    "cifar10": "cifar10-binary",
    "cifar100": "cifar100-binary",
    "digits": "sklearn-digits",
}
# Formats that need no download (the data ships inside an installed package).
OFFLINE_FORMATS: frozenset[str] = frozenset({"sklearn-digits"})

# The paper's display names, so a reader can hold paper and code side by side.
DISPLAY_NAMES: dict[str, str] = {
    "cnn_s": "Student-S",
    "cnn_m": "Student-M",
    "cnn_l": "Student-L",
    "hybrid": "Hybrid",
    "tiny_vit": "Tiny ViT",
}
