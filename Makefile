# The two commands of the README:
#   make demo  - set up, then run the main job (build the built-in data, train, evaluate, tag)
#   make test  - set up, then run the test suite
# Both create .venv on first use. TORCH_SPEC picks the torch build (a CPU build by default here).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup sources demo test clean

# hearvalidator (tests/test_hear.py) without its declared tensorflow dependency, which only its TensorFlow checks use
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,export,plot,triton,sed]"
	$(PY) -m pip install -q --no-deps "hearvalidator>=2021.0.2"
	touch $@

setup: $(VENV)/.installed

sources: setup
	PYTHON=$(PY) bash scripts/setup_sources.sh

demo: setup sources
	bash scripts/main_job.sh $(VENV)/bin/audiomamba

test: setup sources
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
