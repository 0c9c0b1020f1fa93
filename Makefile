# The two fresh-machine commands (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv pyc system browser cluster kubectl cosign lint bench screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Byte-code written once (only what changed): where PYTHONDONTWRITEBYTECODE is set, as on this machine, every
# process — each CLI start, each of the tests' subprocesses — compiled every module of ours again (~0.15 s).
pyc: venv
	$(PY) -m compileall -q gitopskit imagebot reconciler dashboard >/dev/null

system:
	tests/system/install.sh

# Debian's chromium + chromium-driver for the dashboard's browser tests, screenshots and bench (idempotent)
browser:
	tests/system/install.sh --browser

cluster: system
	tests/cluster/build.sh >/dev/null

# kubectl on PATH, else Debian sid's package fetched once into ~/.cache/imagebot/kubectl (Debian 12 has none)
kubectl: system
	tests/tools/kubectl.sh >/dev/null

# Debian sid's cosign 3 for the signature tests, fetched once into ~/.cache/imagebot/cosign (Debian 12 has none)
cosign: system
	tests/tools/cosign.sh >/dev/null

test: venv pyc system cluster kubectl browser cosign
	$(PY) -m pytest -q

demo: venv pyc system cluster kubectl
	$(PY) -m tests.demo $(DEMO_ARGS)

lint: venv
	$(VENV)/bin/ruff check gitopskit imagebot reconciler dashboard tests bench
	$(VENV)/bin/mypy gitopskit imagebot reconciler dashboard
	$(VENV)/bin/lint-imports

bench: venv pyc system cluster kubectl browser
	$(PY) -m bench

# docs/screenshots/*.png from the demo (runs it, or reuses a kept one: SCREENSHOTS_ARGS=--demo DIR)
screenshots: venv system cluster kubectl browser
	$(PY) -m tests.screenshots $(SCREENSHOTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
