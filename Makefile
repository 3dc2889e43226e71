# Every target sets up the cached virtual environment first (scripts/venv.sh: created on the first
# run, fast afterwards); `.venv` is a symlink to it.
SHELL := /bin/bash
PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)

.PHONY: venv test test-all demo zip proto bench-decode meta-train

venv:
	@bash scripts/venv.sh >/dev/null

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ""

demo: venv
	@bash scripts/demo.sh

# The upload: submission.zip at the repository root (model.py, the code it imports, bundle/), with its
# size breakdown; refused over 300 MB; then imported from the extracted zip with the platform's packages only.
zip: venv
	$(PY) -m portfolio.bundle --portfolio bundle --out submission.zip --overwrite

# Regenerate metadata/autodl_data_pb2.py from metadata/autodl_data.proto (protoc from grpcio-tools).
proto: venv
	$(PY) -m grpc_tools.protoc -I. --python_out=. metadata/autodl_data.proto

bench-decode: venv
	$(PY) benchmarks/decode.py
meta-train: venv
	$(PY) -m portfolio.meta_train --profile $${PROFILE:-full} $(if $(OVERWRITE),--overwrite,)
