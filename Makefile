# tidegate: the two commands are `make setup` and `make test`; `make demo` runs the main job.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench

setup:
	bash scripts/setup/setup.sh

# pytest exits 5 when it collected no tests: that is a broken run, never a pass.
test:
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing the run" >&2; exit 1; fi; \
	exit $$rc

lint:
	.venv/bin/ruff check tidegate tests scripts

# every bench/bench_*.py in its own process; writes bench/results.json and docs/benchmarks.md
bench:
	$(PY) bench/run_all.py $(BENCH_ARGS)

# The main job: a local release of a freshly trained candidate, no cluster (INJECT=winrate|drift|parity|prometheus-outage).
demo:
	.venv/bin/tidegate demo $(if $(INJECT),--inject $(INJECT),)
