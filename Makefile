# One command each: `make demo` (offline, 2-core CPU, minutes) and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= $(shell nproc 2>/dev/null || echo 2)
STAMP  := $(VENV)/.kdspectra-installed
DEMO   := results/demo

.PHONY: help install demo test unit workflow lint format faults cluster-test test-gpu bench diagrams clean

help:
	@echo "make install - create .venv and install the project with its dev tools"
	@echo "make demo   - offline end-to-end run (teachers pretrained here, digits) -> $(DEMO)/"
	@echo "make test   - lint + the whole pytest suite (unit, faults, docs, workflow tests)"
	@echo "make unit   - pytest -m 'not workflow and not cluster' (skips the Snakemake runs)"
	@echo "make workflow - the tests that run the Snakefile on a tiny config"
	@echo "make lint   - ruff, pins (env file = pyproject.toml), snakefmt --check, snakemake --lint"
	@echo "make format - ruff --fix, ruff format and snakefmt in place"
	@echo "make cluster-test - SLURM tests (needs a cluster: sudo .ci/slurm/start.sh)"
	@echo "make test-gpu - CUDA-only tests (needs a GPU; skipped without one)"
	@echo "make faults - fault-injection suite, one summary line per scenario (docs/reliability.md)"
	@echo "make bench  - benchmarks vs naive baselines + the demo timed per stage -> results/bench/"
	@echo "make diagrams - regenerate docs/rulegraph.svg and docs/modules.svg (needs graphviz)"
	@echo "make clean  - remove results/ and .snakemake/ (keeps .venv)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --rerun-incomplete
	@echo
	@echo "Demo finished (teachers pretrained on digits here: a miniature of the paper, not its numbers)."
	@echo "  tables:  $(DEMO)/tables/   (table1, table2: .csv .md .tex; geometry.csv/.md; teachers, fig2, fig3, fig4 .csv; paper_comparison.md; claims.md)"
	@echo "  figures: $(DEMO)/figures/  (fig1_spectrum, fig2_effective_rank, fig3_noise_robustness, fig4_dynamics: .png .pdf)"
	@echo "  report:  $(BIN)/snakemake --configfile config/demo.yaml --report $(DEMO)/report.html"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks tools workflow/scripts
	$(BIN)/python tools/check_pins.py
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --configfile config/demo.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks tools workflow/scripts
	$(BIN)/ruff format src tests benchmarks tools workflow/scripts
	$(BIN)/snakefmt Snakefile workflow/rules

# HF_HUB_OFFLINE: tests never reach a model hub; a test that tries fails at once.
test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

faults: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_faults.py

cluster-test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m cluster tests/test_cluster.py

# The CUDA-only tests (bf16 resume, fp32 embedding, teacher CUDA vs CPU, CUDA RNG in
# checkpoints); they skip on a machine without CUDA.
test-gpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m cuda tests/test_gpu.py

# Every benchmark module, then the demo DAG from nothing in a scratch directory, timed.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --demo --cores $(CORES)

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not workflow and not cluster"

workflow: $(STAMP)
	$(BIN)/python -m pytest -m workflow

# docs/rulegraph.{dot,svg} and docs/modules.{dot,svg}, generated from the rules and the
# imports (rendering needs Graphviz's `dot`; tests/test_docs.py checks they are current).
diagrams: $(STAMP)
	$(BIN)/python tools/diagrams.py

clean:
	rm -rf results .snakemake
