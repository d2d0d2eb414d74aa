"""Models: student networks, teacher specs and their libraries, and inference (batched,
fp32 embedding). Imports the layers below (ground, runtime, data, metrics)."""
