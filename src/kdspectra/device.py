"""Resolve the config's ``device`` key to a torch device, failing early and clearly."""

from __future__ import annotations

import torch

from kdspectra.errors import ConfigError

DEVICES = ("auto", "cuda", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cuda|cpu`` to a :class:`torch.device`.

    ``auto`` picks CUDA when available. ``cuda`` on a machine without CUDA is a config
    error rather than a silent fallback: a 100x slower run is not what the user asked for.
    """
    if name not in DEVICES:
        raise ConfigError(f"config key 'device': expected one of {list(DEVICES)}, found {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key 'device': 'cuda' was requested but torch.cuda.is_available() is False "
            "on this machine; use 'auto' or 'cpu'"
        )
    return torch.device(name)
