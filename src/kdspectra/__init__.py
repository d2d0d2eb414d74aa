"""kdspectra: the spectral geometry of knowledge distillation, reproduced end to end."""

__version__ = "0.1.0"
