# One command sets up and serves, one sets up and tests; both build .venv from pyproject.toml
# (the product, the test tools and the benches' extra: serve needs only the first).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $(STAMP)

.PHONY: setup serve test bench
setup: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/sms-bridge serve

test: $(STAMP)
	$(VENV)/bin/mypy bridge
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(VENV)/bin/sms-bridge bench all
