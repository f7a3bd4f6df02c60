# The two setup commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: install install-test demo test benchmarks

install:
	$(PIP) -e .

demo: install
	bayesicl demo

# torch is an optional extra; install the CPU build first where torch is absent, so that the
# range requirement (torch>=2.3) does not pull a multi-GB CUDA build.
install-test:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) "torch==2.13.0"
	$(PIP) -e ".[train,ray,test]"

test: install-test
	$(PYTHON) -m pytest -n 2 --timeout 900 tests bayesicl

benchmarks: install-test
	$(PYTHON) benchmarks/strategies.py
	$(PYTHON) benchmarks/fit.py
	$(PYTHON) benchmarks/training.py
