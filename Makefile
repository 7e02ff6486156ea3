# The two commands a newcomer needs: `make dev` (the stack on this machine) and `make test`.
# Both create their own virtual environment in .venv and install what they need into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: dev test lint bench e2e crd clean

# The example workloads are their own distribution (examples/pyproject.toml), installed
# next to beatkeeper: `beatkeeper dev` and the tests run them.
$(BIN)/.installed: pyproject.toml examples/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "beatkeeper needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns about every editable install, whatever the project; not for us to act on
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[dev]' -e ./examples
	@touch $@

dev: $(BIN)/.installed
	$(BIN)/beatkeeper dev

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest

# Quick runs of every benchmark; README.md shows the full-size commands.
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/recurrence.py --quick
	$(BIN)/python benchmarks/scale.py --quick
	$(BIN)/python benchmarks/overhead.py --messages 1000 --rounds 1
	$(BIN)/python benchmarks/end_to_end.py --schedules 60 --seconds 20 --warm-up 5
	$(BIN)/python benchmarks/kube_operator.py --quick

e2e: $(BIN)/.installed
	$(BIN)/pytest tests/e2e -v

# Regenerate the CRD from the spec models (a test fails while the committed copies differ).
crd: $(BIN)/.installed
	$(BIN)/beatkeeper crd > manifests/crds/schedules.beatkeeper.io.yaml
	cp manifests/crds/schedules.beatkeeper.io.yaml charts/beatkeeper/files/crds/schedules.beatkeeper.io.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
