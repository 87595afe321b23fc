# Two commands for a user: `make run` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of PyTorch for the test oracles (sentence-transformers); installed before the test extra so
# that pip does not resolve a multi-GB CUDA build. Override on machines that want another build.
TORCH_SPEC ?= torch==2.13.0
WORKDIR ?= workdirs
PYTEST_ARGS ?= -n 2 --durations=20
EMULATED := XLA_FLAGS=--xla_force_host_platform_device_count=8

.PHONY: venv run test test-all bench reproduce reproduce-gpu report lint list clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

## The main job: a quick tour of all eight articles (each article's `quick` variant), then its table.
run: venv
	$(PY) -m experiments.run --config=configs/tour.py:main --workdir=$(WORKDIR)/tour

## The test suite (CI runs this), with 8 emulated CPU devices so sharding is always exercised.
test: venv
	$(EMULATED) $(PY) -m pytest $(PYTEST_ARGS)

test-all: venv
	$(EMULATED) $(PY) -m pytest $(PYTEST_ARGS) -m ""

## Every config's `bench` variant, into results/<config>/bench, then REPORT.md.
bench: venv
	$(PY) -m experiments.reproduce --variants=bench --out=results

## Every config's reproduction variants (its REPRODUCE list), into results/<config>/<variant>, then REPORT.md.
reproduce: venv
	$(PY) -m experiments.reproduce --out=results

## The full-size (GPU) variants of every config (its REPRODUCE_GPU list), meant to take <= 10 min on one H100:
## installs the CUDA build of the pinned jax into the venv first. Refuses to run without a GPU.
JAX_CUDA_SPEC ?= jax[cuda12]
reproduce-gpu: venv
	$(PY) -m pip install -q "$(JAX_CUDA_SPEC)==$$($(PY) -c 'import jax; print(jax.__version__)')"
	$(PY) -m experiments.reproduce --gpu --out=results

## Rebuild REPORT.md from the results already in results/.
report: venv
	$(PY) -m experiments.reproduce --report-only --out=results

list: venv
	$(PY) -m experiments.run --list

lint: venv
	$(PY) -m compileall -q research experiments configs tests
	$(PY) -m ruff check research experiments configs tests

clean:
	rm -rf $(WORKDIR) .pytest_cache
