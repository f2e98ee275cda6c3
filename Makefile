.PHONY: test demo bench
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bootstrap.sh && .venv/bin/python bench/poll_bench.py
