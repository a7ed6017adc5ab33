# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= stanford-dogs
BREEDS ?= 10
OUT    ?= runs/demo
DATA_FLAGS := $(if $(filter stanford-dogs,$(DATA)),--breeds $(BREEDS))

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[openvino]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,openvino]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Stanford Dogs (first $(BREEDS) breeds) is downloaded into ~/.cache/transferlab on first use;
# DATA=path/to/photos (or a .csv manifest) runs on your own. RECIPE=seed runs the notebook's epochs.
RECIPE ?= quick
demo: install
	$(BIN)/tlab data check "$(DATA)" $(DATA_FLAGS) || true
	$(BIN)/tlab compare "$(DATA)" $(DATA_FLAGS) --recipe $(RECIPE) --batch-size 32 --out "$(OUT)"

test: install-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
