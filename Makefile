# Two entry points (see README): `make reproduce` and `make test`. Both create .venv first if needed.
PYTHON     ?= python3
VENV       ?= .venv
PROFILE    ?= quick
DATA_ROOT  ?=
NOTEBOOKS  ?=
# This machine keeps these wheels on disk; elsewhere any recent torch works (override TORCH_SPEC).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python

.PHONY: reproduce test env clean-reports

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	touch $@

reproduce: env
	$(VENV)/bin/lmk reproduce $(NOTEBOOKS) --profile $(PROFILE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

test: env
	$(PY) -m pytest -q -ra

clean-reports:
	rm -rf reports/*/ reports/.tmp-* reports/.old-* reports/README.md
