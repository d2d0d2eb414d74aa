"""Errors a user can act on.

Every failure that comes from user input (config, archives, embeddings, checkpoints) is a
:class:`KdspectraError` whose message names the key or file, what was expected and what
was found, so a researcher reading a Snakemake log knows what to fix without a traceback.
"""

from __future__ import annotations


class KdspectraError(Exception):
    """Base class for errors caused by input the user controls."""


class ConfigError(KdspectraError, ValueError):
    """A config key holds a value the pipeline cannot use."""


class DataError(KdspectraError, ValueError):
    """A dataset archive or prepared array is missing, corrupt or malformed."""


class ArtifactError(KdspectraError, ValueError):
    """An intermediate artifact (embeddings, checkpoint, weights) is unusable."""


class ChecksumError(DataError):
    """A downloaded file's md5 does not match the config."""


class DeviceError(KdspectraError, RuntimeError):
    """The job's hardware is not what the config and the scheduler promised (a GPU
    allocation whose CUDA does not work)."""
