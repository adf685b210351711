# Two commands on a fresh machine:
#   make demo   set up, start an embedded Kafka broker, the ingestor and the producer
#   make test   set up and run the test suite
#               (a selection: make test TESTS=tests/test_config.py PYTEST_ARGS="-k typo";
#               JOBS=0 runs the tests one after another)
#   make broker the embedded Kafka broker alone, at 127.0.0.1:9092 (BROKER_PORT=...), until Ctrl-C
# Both create the virtual environment .venv on first use and refresh it when
# a requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTS ?= tests
PYTEST_ARGS ?=
DEMO_ARGS ?=
BROKER_PORT ?= 9092
# Tests run side by side in this many processes (pytest-xdist); each has its own broker.
JOBS ?= 5

.PHONY: venv test demo broker clean

venv: $(STAMP)

$(STAMP): requirements_SFI.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements_SFI.txt -r requirements-test.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(TESTS) -n $(JOBS) $(PYTEST_ARGS)

demo: $(STAMP)
	@$(PY) examples/demo.py $(DEMO_ARGS)

broker: $(STAMP)
	@$(PY) examples/broker.py --port $(BROKER_PORT)

clean:
	rm -rf $(VENV) .pytest_cache demo-output
