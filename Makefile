# The two fresh-machine commands (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv system cluster kubectl lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

system:
	tests/system/install.sh

cluster: system
	tests/cluster/build.sh >/dev/null

# kubectl on PATH, else Debian sid's package fetched once into ~/.cache/imagebot/kubectl (Debian 12 has none)
kubectl: system
	tests/tools/kubectl.sh >/dev/null

test: venv system cluster kubectl
	$(PY) -m pytest -q

demo: venv system cluster kubectl
	$(PY) -m tests.demo $(DEMO_ARGS)

lint: venv
	$(VENV)/bin/ruff check gitopskit imagebot reconciler tests bench
	$(VENV)/bin/mypy gitopskit imagebot reconciler
	$(VENV)/bin/lint-imports

bench: venv system cluster
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
