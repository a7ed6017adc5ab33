# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= sample
BREEDS ?= 10
OUT    ?= runs/demo
FLAGS  ?=
DATA_FLAGS := $(if $(filter stanford-dogs,$(DATA)),--breeds $(BREEDS))

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[openvino,audit]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,openvino,audit]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# By default the clothing sample shipped in the package (offline, a few minutes on 2 cores). DATA=stanford-dogs
# downloads the seed's data set (its first $(BREEDS) breeds); DATA=path/to/photos (or a .csv manifest) runs on
# your own. RECIPE=seed runs the notebook's epochs; FLAGS adds tlab compare flags.
RECIPE ?= quick
demo: install
	$(BIN)/tlab data check "$(DATA)" $(DATA_FLAGS) || true
	$(BIN)/tlab compare "$(DATA)" $(DATA_FLAGS) --recipe $(RECIPE) --batch-size 32 --out "$(OUT)" $(FLAGS)
	@echo "Open $(OUT)/report.html in a browser. The seed's own data (Stanford Dogs, downloaded once): make demo DATA=stanford-dogs OUT=runs/dogs"

test: install-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
