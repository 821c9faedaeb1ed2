# Two commands on a fresh machine:  `make run` (set up + python train.py +experiment=p80),  `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

.PHONY: setup run test lint bench
setup: $(VENV)/.installed

run: setup
	$(PY) train.py +experiment=p80

test: setup
	$(VENV)/bin/ruff check .
	WANDB_MODE=disabled $(VENV)/bin/pytest -q

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
