# cnnviz: the two commands of the README, each self-contained from a fresh clone.
#   make lab    create .venv if missing, install, open JupyterLab on the course (lesson 03)
#               headless or remote: make lab LAB_ARGS="--no-browser --port=8890", then open the URL it prints;
#               another lesson: make lab LESSON=05; another model: CNNVIZ_MODEL=vgg16 make lab
#   make test   create .venv if missing, install, run every test (units, notebooks, website, browser)
# and:
#   make student  the student copies of the lessons (solutions replaced by stubs) into student/
# and:
#   make book   build the website into _build/site (offline, lessons executed in full mode; BOOK_QUICK=1: quick)
#   make doctor check models, devices and the image cache
#   make bench  run the benchmarks

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cnnviz-installed
MATHJAX := notebooks/_vendor/mathjax/tex-mml-chtml.js
PYTEST_ARGS ?=
LAB_ARGS ?=
LESSON ?= 03_activation_maps

# The kernels must use Jupyter's inline backend: an MPLBACKEND such as Agg inherited from the
# shell would make every plt.show() in a lesson draw nothing (blank website pages and lessons).
unexport MPLBACKEND

# A relative CNNVIZ_DATA would be read from each kernel's own folder: make it absolute.
ifneq ($(strip $(CNNVIZ_DATA)),)
override CNNVIZ_DATA := $(abspath $(CNNVIZ_DATA))
export CNNVIZ_DATA
endif

.PHONY: lab test student book doctor bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cnnviz needs Python >= 3.11, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=24"
	$(BIN)/python -m pip install -e ".[test,lab,book]"
	$(BIN)/python -m cnnviz_helpers lab --setup-only
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"
	touch $(STAMP)

install: $(STAMP)

# `python -m cnnviz_helpers lab` (cnnviz_helpers/lab.py; conda users run the same command): installs the
# settings that open the .md lessons as notebooks, writes the missing student copies (student/; the
# lessons with solutions: LAB_ARGS=--solutions), runs `prepare` (the course images fetched once, then
# everything runs offline; the 1000 photos decoded so lessons 01 and 13 skip JPEG decoding; offline it
# says why in one line and goes on), then starts JupyterLab on student/ with lesson 03 as its start page
# (--allow-root when run as root). LESSON=05 opens another lesson; LAB_ARGS go to `jupyter lab`.
lab: $(STAMP)
	$(BIN)/python -m cnnviz_helpers lab --notebooks notebooks $(LESSON) $(LAB_ARGS)

# The student copies of the lessons (solutions replaced by stubs) into student/ (git-ignored); existing
# copies are the student's work and are kept. `make lab` writes the missing ones itself.
student: $(STAMP)
	$(BIN)/python -m cnnviz_helpers student student --notebooks notebooks

# The tests run on EfficientNet-Lite0 whatever CNNVIZ_MODEL says (tests/test_lessons_on_lecture_models.py
# runs the lessons on untrained AlexNet and VGG16 itself).
test: $(STAMP)
	env -u CNNVIZ_MODEL -u CNNVIZ_WEIGHTS CNNVIZ_QUICK=1 $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "make book needs npm (MathJax is served from the site itself)"; exit 1; }
	rm -rf .cache/mathjax && mkdir -p .cache/mathjax notebooks/_vendor
	cd .cache/mathjax && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz package/es5
	rm -rf notebooks/_vendor/mathjax && mv .cache/mathjax/package/es5 notebooks/_vendor/mathjax

# The website is the course for its readers: every lesson executed in full mode (its full-mode photos,
# steps and sizes; about 16 minutes on 2 cores), so the figures are the ones the prose describes.
# BOOK_QUICK=1 builds a quick-mode draft.
BOOK_QUICK ?= 0
book: $(STAMP) $(MATHJAX)
	CNNVIZ_QUICK=$(BOOK_QUICK) $(BIN)/jupyter-book build notebooks --config $(CURDIR)/book.yml --toc $(CURDIR)/_toc.yml \
		-W --all --path-output _build/site

doctor: $(STAMP)
	$(BIN)/python -m cnnviz_helpers doctor

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build .cache notebooks/_vendor .pytest_cache
