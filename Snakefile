# kdspectra: spectral geometry of knowledge distillation, regenerated from scratch.
# The DAG: download -> prepare -> extract teacher embeddings -> train students ->
# embed students -> spectrum -> noise -> collect -> tables and figures.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# The landing page of `snakemake --report`: the run, its teachers, data and seeds, and
# what it found.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/corruptions.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
