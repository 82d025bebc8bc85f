# The README's two commands. Each creates .venv when missing and installs the project into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK_STAMP := $(VENV)/.installed-stack
STACK := $(BIN)/python infra/local/stack.py

.PHONY: demo test install clean test-stack stack-up stack-down stack-env

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# constraints.txt pins the indirect dependencies too, so a new release elsewhere cannot change a clean install.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(STACK_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,stack]'
	touch $(STACK_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlci demo

# Label Studio (its own venv, for the connector's tests; minutes on a clean clone) installs in the
# background while the first tests run; its tests wait for it through the install's file lock.
test: $(STAMP)
	$(BIN)/python tests/labelstudio_server.py >/dev/null 2>&1 &
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The production topology on this machine (infra/local, docs/operations.md): PostgreSQL, S3,
# MLflow server, Prefect server and worker, Dask; state in .stack/.
stack-up: $(STACK_STAMP)
	infra/local/install-postgres
	$(STACK) up

stack-down:
	$(STACK) down

stack-env:
	@$(STACK) env

# Starts its own stack in a temporary folder, runs the nightly and four faults on it, stops it.
test-stack: $(STACK_STAMP)
	infra/local/install-postgres
	$(BIN)/python -m pytest tests/stack --stack -s -v

clean:
	rm -rf $(VENV) .mlci .stack
