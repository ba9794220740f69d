# cnnviz: the two commands of the README, each self-contained from a fresh clone.
#   make lab    create .venv if missing, install, open JupyterLab on the course
#   make test   create .venv if missing, install, run every test (units, notebooks, website, browser)
# and:
#   make book   build the website into _build/site (offline, lessons executed in quick mode)
#   make doctor check models, devices and the image cache
#   make bench  run the benchmarks

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cnnviz-installed
MATHJAX := notebooks/_vendor/mathjax/tex-mml-chtml.js
PYTEST_ARGS ?=

# The kernels must use Jupyter's inline backend: an MPLBACKEND such as Agg inherited from the
# shell would make every plt.show() in a lesson draw nothing (blank website pages and lessons).
unexport MPLBACKEND

# A relative CNNVIZ_DATA would be read from each kernel's own folder: make it absolute.
ifneq ($(strip $(CNNVIZ_DATA)),)
override CNNVIZ_DATA := $(abspath $(CNNVIZ_DATA))
export CNNVIZ_DATA
endif

.PHONY: lab test book doctor bench install clean

$(STAMP): pyproject.toml jupyter/overrides.json
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cnnviz needs Python >= 3.11, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=24"
	$(BIN)/python -m pip install -e ".[test,lab,book]"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"
	touch $(STAMP)

install: $(STAMP)

# prepare: the course images fetched (once; then everything runs offline) and the 1000 photos decoded
# into the cache, so lessons 01 and 13 skip JPEG decoding. Offline without them it says why; the lab
# opens anyway ("-").
lab: $(STAMP)
	-$(BIN)/python -m cnnviz_helpers prepare
	$(BIN)/jupyter lab --notebook-dir=notebooks 03_activation_maps.md

test: $(STAMP)
	CNNVIZ_QUICK=1 $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "make book needs npm (MathJax is served from the site itself)"; exit 1; }
	rm -rf .cache/mathjax && mkdir -p .cache/mathjax notebooks/_vendor
	cd .cache/mathjax && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz package/es5
	rm -rf notebooks/_vendor/mathjax && mv .cache/mathjax/package/es5 notebooks/_vendor/mathjax

book: $(STAMP) $(MATHJAX)
	CNNVIZ_QUICK=1 $(BIN)/jupyter-book build notebooks --config $(CURDIR)/book.yml --toc $(CURDIR)/_toc.yml \
		-W --all --path-output _build/site

doctor: $(STAMP)
	$(BIN)/python -m cnnviz_helpers doctor

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build .cache notebooks/_vendor .pytest_cache
