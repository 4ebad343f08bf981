# The two commands: `make run` brings NAS Studio up, `make test` runs every test.
# Each creates .venv and installs requirements.txt when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: run test lint bench demo clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) manage.py up --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .

demo: $(VENV)/.installed
	$(PY) -m search_engine run --dataset digits --space nb201 --strategy evolution --estimator train \
		--trials 20 --epochs 3 --max-params 100000 --seed 0 --out runs/demo

bench: $(VENV)/.installed
	for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
