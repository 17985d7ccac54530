# nscl: two commands on a fresh machine, `make book` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
CHAPTERS := $(sort $(wildcard book/[0-9][0-9]_*.py))
NOTEBOOKS := $(patsubst book/%.py,$(BUILD)/book/%.ipynb,$(CHAPTERS))
SITE_SRC := $(BUILD)/site-src
HTML := $(BUILD)/html
# MathJax 3 for the rendered book, from the npm registry (package.json / package-lock.json).
MATHJAX := node_modules/mathjax/es5/tex-chtml.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# One cache for generated data and pretrained tiny backbones, shared by tests and chapters.
export NSCL_CACHE ?= $(CURDIR)/.cache/nscl
export PYTHONUNBUFFERED := 1

.PHONY: book test lint venv notebooks execute html browser-test chromium clean exercises-elsewhere

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[book,test]"
	touch $@

$(MATHJAX): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Jupytext sources -> unexecuted .ipynb (papermill input).
$(BUILD)/book/%.ipynb: book/%.py $(VENV)/.installed
	@mkdir -p $(dir $@)
	$(VENV)/bin/jupytext --quiet --to ipynb --output $@ $<

notebooks: $(NOTEBOOKS)

# The book: every chapter executed once, then rendered to static HTML (build/html/index.html).
book: execute
	@$(MAKE) --no-print-directory html

# Execute every chapter with its default (tiny, CPU) parameters into build/executed/, two at a time with a
# thread each (book/execute.py: chapters that share runs keep their order); a cell that raises stops here
# (papermill exits non-zero, the failing notebook is kept).
execute: $(NOTEBOOKS)
	$(PY) book/execute.py --out $(BUILD)/executed $(NOTEBOOKS)

# Render the executed chapters (no execution, no network) into build/html: book/build_site.py
# assembles build/site-src (chapters, index.md, references, _config.yml, generated _toc.yml,
# MathJax), Sphinx (Jupyter Book 1: myst-nb + sphinx-book-theme) builds it.
html: $(VENV)/.installed $(MATHJAX)
	@mkdir -p $(BUILD); start=$$(date +%s); \
	$(PY) book/build_site.py --executed $(BUILD)/executed --out $(SITE_SRC) && \
	rm -rf $(HTML) $(BUILD)/.doctrees && \
	$(VENV)/bin/sphinx-build -q -b html -d $(BUILD)/.doctrees $(SITE_SRC) $(HTML) && \
	echo "html: $(HTML)/index.html built in $$(( $$(date +%s) - start )) s"

# The rendered book in headless Chromium, network blocked (tests/test_book_html.py).
browser-test: chromium $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/test_book_html.py

# Debian's Chromium for the browser test (Playwright drives it; `playwright install` is not used).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# Lint, unit tests, the exercises on other arithmetic, then the book (each chapter executed once, a cell
# error fails), then its HTML in a browser.
test: chromium $(VENV)/.installed
	@$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q tests --ignore=tests/test_book_html.py
	@$(MAKE) --no-print-directory exercises-elsewhere
	@$(MAKE) --no-print-directory book
	@$(MAKE) --no-print-directory browser-test

# ruff's lint rules (pyproject.toml [tool.ruff]) on the package, tests, benchmarks and chapters.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The exercise sets' answers must not hinge on the machine: run the tests that depend on the answers
# (every solution passes, every catalogued wrong answer fails) again with 1 thread (other reduction
# orders) and, beside it, with the backbone weights perturbed at float32 rounding level
# (nscl.models.artifacts); one thread each, so the two share the 2 cores without contention.
ANSWER_TESTS := -k "solution_passes_every_check or wrong_answer_fails"
exercises-elsewhere: $(VENV)/.installed
	@mkdir -p $(BUILD); start=$$(date +%s); \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_exercises.py \
	  $(ANSWER_TESTS) > $(BUILD)/exercises-1-thread.log 2>&1 & one=$$!; \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NSCL_PERTURB_WEIGHTS=1 $(PY) -m pytest -q -p no:cacheprovider \
	  tests/test_exercises.py $(ANSWER_TESTS) > $(BUILD)/exercises-perturbed.log 2>&1 & two=$$!; \
	wait $$one; a=$$?; wait $$two; b=$$?; \
	tail -n 3 $(BUILD)/exercises-1-thread.log $(BUILD)/exercises-perturbed.log; \
	echo "exercises with 1 thread: rc $$a; with perturbed weights: rc $$b ($$(( $$(date +%s) - start )) s)"; \
	test $$a = 0 && test $$b = 0

clean:
	rm -rf $(BUILD)
