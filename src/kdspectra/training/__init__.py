"""Training: the distillation loop, its construction, config, losses, checkpoints,
tracking, run records and failure markers. Imports the layers below."""
