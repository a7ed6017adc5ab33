# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?=
OUT    ?= runs/demo

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	@if [ -z "$(DATA)" ]; then \
	  echo "make demo needs a folder of photos until the Stanford Dogs source lands:"; \
	  echo "  make demo DATA=path/to/photos   (DATA/train/<class>/*, DATA/val/<class>/*, or DATA/<class>/*)"; \
	  echo "  e.g. make demo DATA=../shared/data/woof-mini"; \
	  exit 2; \
	fi
	$(BIN)/tlab train "$(DATA)" --strategy frozen --epochs 3 --batch-size 32 --out "$(OUT)"

test: install-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
