# dsnode developer entry points. `make demo` and `make test` work on a fresh machine (they create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extras to install. When an extra needs torch (the `ml` extra: DP-SGD models), torch==2.13.0 (the offline
# CPU build) is installed first, so no resolver ever pulls a CUDA build from the registry.
EXTRAS ?= test,ml
TORCH  := torch==2.13.0

.PHONY: venv demo test lint pytest bench clean devchain

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
	$(BIN)/ruff check node privacy pricing ledger contracts tests bench
	$(BIN)/mypy

# A real EVM JSON-RPC dev chain (Hardhat 2, npm registry) for the JSON-RPC tests; they skip without npm.
DEVCHAIN := deploy/devchain/node_modules/.bin/hardhat
devchain: $(DEVCHAIN)
$(DEVCHAIN): deploy/devchain/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix deploy/devchain --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the JSON-RPC dev chain tests will skip"; fi

pytest: venv devchain
	$(BIN)/python -m pytest -q

test: lint pytest

bench: venv devchain
	$(BIN)/python bench/bench_authz.py
	$(BIN)/python bench/bench_flight_rows.py
	$(BIN)/python bench/bench_flight_rows.py --scenario release
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_dp_aggregate.py
	$(BIN)/python bench/bench_pii.py
	$(BIN)/python bench/bench_catalog.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_shapley.py
	$(BIN)/python bench/bench_chain.py
	$(BIN)/python bench/bench_space.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
