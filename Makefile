# Every target runs from a checkout; `make test` is the one command that runs every check.
VENV := .venv/bin
# Rule options the shipped rules are generated with (see `promotion-exporter generate rules
# --help`); `make test` checks the committed files against the same ones.
RULE_FLAGS ?=

.PHONY: all bootstrap fmt lint typecheck generate check-generated test bench demo

all: fmt generate test

bootstrap:
	bash scripts/bootstrap.sh

fmt: bootstrap
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck: bootstrap
	$(VENV)/mypy

generate: bootstrap
	$(VENV)/python -m exporter generate all $(RULE_FLAGS)

check-generated: bootstrap
	$(VENV)/python -m exporter generate all --check $(RULE_FLAGS)

test:
	RULE_FLAGS='$(RULE_FLAGS)' bash scripts/test.sh

bench: bootstrap
	$(VENV)/python bench/poll_bench.py

demo:
	bash scripts/demo.sh
