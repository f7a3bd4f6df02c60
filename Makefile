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
#
# The browser test of the report page (tests/test_report.py) drives Chromium: Debian's package,
# installed where it is absent and apt-get is available (as root, or with password-less sudo).
# Where it cannot be installed, that test is skipped and says why; `make test` still runs.
install-test:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) "torch==2.13.0"
	$(PIP) -e ".[train,ray,test]"
	@for b in chromium chromium-browser google-chrome; do command -v $$b >/dev/null 2>&1 && exit 0; done; \
	command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install Chromium yourself for the report's browser test"; exit 0; }; \
	sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	{ $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium; } \
	  || echo "could not install chromium: the report's browser test will be skipped"

test: install-test
	$(PYTHON) -m pytest -n 2 --timeout 900 tests bayesicl

benchmarks: install-test
	$(PYTHON) benchmarks/strategies.py
	$(PYTHON) benchmarks/fit.py
	$(PYTHON) benchmarks/training.py
