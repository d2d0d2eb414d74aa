"""Runtime: the device a job runs on, its logs, resource requests, measurement precision
and per-stage timings. Imports only the ground floor (errors, io, registry, config)."""
