# iqa_lab — `make help` lists the targets.
SHELL := /bin/bash
PYTHON_BASE ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo lint format test test-full train eval score explain check aggregate reproduce-table table bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install iqa_lab with pinned versions (idempotent)

# Reinstalls only when the pins change. torch/torchvision come from the machine's local wheel cache
# when present (pip only: uv and poetry would download several GB of CUDA wheels instead).
$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" 2>/dev/null || true
	$(PY) -m pip install --quiet -c requirements/lock.txt -e ".[dev]"
	$(PY) -c "import iqa_lab, torch, timm, lightning, hydra; print('iqa_lab installed: torch', torch.__version__, 'timm', timm.__version__, 'lightning', lightning.__version__)"
	@touch $(STAMP)

# Each run prints its phases (data_prepare builds the database the first time, features, training,
# test); the install phase is timed here. The 3 split seeds run as one multirun: the features of
# every image are computed by the first and read from the cache by the others. The sweep folder is
# given relative to the repository: conf/hydra's default (${paths.log_dir}) needs ${hydra:runtime.cwd},
# which Hydra's basic sweeper cannot resolve when it creates the folder.
DEMO_REPEATS ?= 0,1,2
demo: ## the main job: install, build the synthetic database, the fast recipe on held-out photos (3 split seeds, median)
	@start=$$(date +%s.%N); \
	$(MAKE) --no-print-directory install || exit $$?; \
	installed=$$(date +%s.%N); \
	awk -v s=$$start -v e=$$installed 'BEGIN { printf "phase install: %.1f s\n", e - s }'; \
	$(PY) -m iqa_lab.train -m experiment=demo protocol.repeat=$(DEMO_REPEATS) || exit $$?; \
	awk -v s=$$start -v i=$$installed -v e=$$(date +%s.%N) 'BEGIN { printf "\nmake demo: install %.1f s + runs %.1f s (their phases above) = %.1f s\n", i - s, e - i, e - s }'

lint: install ## ruff (lint + format check) and import-linter (layers point down; pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install lint ## lint, then the default test suite (excludes tests marked slow)
	@set +e; $(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure"; exit 1; fi; exit $$rc

test-full: install ## every test, slow ones included
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure"; exit 1; fi; exit $$rc

# Every command is also a console script (pyproject.toml [project.scripts]) and answers --help.
train: install ## iqa-train: fit and test, ARGS="key=value ..." (make train ARGS=--help)
	$(PY) -m iqa_lab.train $(ARGS)

eval: install ## iqa-eval: test a checkpoint, ARGS="ckpt_path=... data=..." (make eval ARGS=--help)
	$(PY) -m iqa_lab.eval $(ARGS)

score: install ## iqa-score: score new photos, ARGS="ckpt=… inputs=…" or ARGS="metric=brisque_live inputs=…" (make score ARGS=--help)
	$(PY) -m iqa_lab.score $(ARGS)

explain: install ## iqa-explain: Grad-CAM overlays of a checkpoint's scores + contact sheet, ARGS="ckpt=… inputs=… method=gradcam|gradcampp|layercam" (make explain ARGS=--help)
	$(PY) -m iqa_lab.explain $(ARGS)

check: install ## iqa-check: is a database usable? ARGS="data=… data.data_dir=…" (make check ARGS=--help)
	$(PY) -m iqa_lab.data.check $(ARGS)

aggregate: install ## iqa-aggregate: statistics over repeats, ARGS="DIR …" (make aggregate ARGS=--help)
	$(PY) -m iqa_lab.evaluation.aggregate $(ARGS)

reproduce-table: install ## iqa-table: every cell of experiments/tables/$(TABLE).yaml, ours beside published (data_root=… ARGS="overrides"; DRY_RUN=1 prints the plan, writes nothing; make reproduce-table ARGS=--help)
	@test -n "$(TABLE)$(filter -h --help,$(ARGS))" || { echo "usage: make reproduce-table TABLE=<name>  (tables: $$(ls experiments/tables | sed 's/\.yaml//' | tr '\n' ' '))"; exit 2; }
	$(PY) -m iqa_lab.evaluation.tables $(TABLE) $(if $(data_root),paths.data_root=$(abspath $(data_root))) $(if $(DRY_RUN),--dry-run) $(ARGS)

bench: install ## iqa-bench: speed ratios with goals and verdicts, printed and in bench.json, ARGS="data=… bench.epoch_batches=…" (make bench ARGS=--help)
	$(PY) -m iqa_lab.bench $(ARGS)

table: reproduce-table ## the same as reproduce-table (make table TABLE=<name>; make table ARGS=--help)

clean: ## remove run outputs (logs/); keeps .venv and the dataset cache
	rm -rf logs outputs multirun .pytest_cache
