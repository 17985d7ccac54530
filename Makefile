# nscl: two commands on a fresh machine, `make book` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
CHAPTERS := $(sort $(wildcard book/[0-9][0-9]_*.py))
NOTEBOOKS := $(patsubst book/%.py,$(BUILD)/book/%.ipynb,$(CHAPTERS))
# One cache for generated data and pretrained tiny backbones, shared by tests and chapters.
export NSCL_CACHE ?= $(CURDIR)/.cache/nscl
export PYTHONUNBUFFERED := 1

.PHONY: book test venv notebooks clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[book,test]"
	touch $@

# Jupytext sources -> unexecuted .ipynb (papermill / nbmake input).
$(BUILD)/book/%.ipynb: book/%.py $(VENV)/.installed
	@mkdir -p $(dir $@)
	$(VENV)/bin/jupytext --quiet --to ipynb --output $@ $<

notebooks: $(NOTEBOOKS)

# Execute every chapter with its default (tiny, CPU) parameters; executed copies land in build/.
book: $(NOTEBOOKS)
	@mkdir -p $(BUILD)/executed
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(VENV)/bin/papermill --log-level WARNING $$nb $(BUILD)/executed/$$(basename $$nb) || exit 1; \
	done

# Unit tests, then every chapter executed by nbmake (from book/ so relative paths match `make book`).
test: $(NOTEBOOKS)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q -p no:cacheprovider --nbmake --nbmake-timeout=900 $(NOTEBOOKS)

clean:
	rm -rf $(BUILD)
