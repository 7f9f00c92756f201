# dsnode developer entry points. `make demo` and `make test` work on a fresh machine (they create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extras to install. When an extra needs torch (the `ml` extra: DP-SGD models), torch==2.13.0 (the offline
# CPU build) is installed first, so no resolver ever pulls a CUDA build from the registry.
EXTRAS ?= test,ml
TORCH  := torch==2.13.0

.PHONY: venv demo test lint pytest bench clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	@case ",$(EXTRAS)," in *,ml,*) $(BIN)/pip install -q "$(TORCH)";; esac
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/dsnode demo

lint: venv
	$(BIN)/ruff check node privacy pricing ledger tests bench
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest -q

test: lint pytest

bench: venv
	$(BIN)/python bench/bench_authz.py
	$(BIN)/python bench/bench_flight_rows.py
	$(BIN)/python bench/bench_flight_rows.py --scenario release
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_dp_aggregate.py
	$(BIN)/python bench/bench_pii.py
	$(BIN)/python bench/bench_catalog.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_shapley.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
