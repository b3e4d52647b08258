# Warren's developer entry points. `make help` lists them; README.md's two commands are
# `make run` and `make test`. Everything lands in .venv (Python) and target/ (Rust); re-running
# `make install` rebuilds only what changed (stamp files under .venv/).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

VENV_STAMP := $(VENV)/.venv-stamp
RAFT_STAMP := $(VENV)/.raft-stamp
WARREN_STAMP := $(VENV)/.warren-stamp

# Inputs of the warren-raft wheel: a change to any of them rebuilds it.
RAFT_SOURCES := $(shell find rust -path rust/target -prune -o \
	\( -name '*.rs' -o -name Cargo.toml -o -name pyproject.toml -o -name '*.pyi' \) -print 2>/dev/null) \
	$(wildcard Cargo.toml Cargo.lock)
# Inputs of the editable `warren` install (the .pyx is compiled there).
WARREN_SOURCES := pyproject.toml setup.py warren/_raft.pyx

.DEFAULT_GOAL := help
.PHONY: help install test bench peers lint run image clean clean-all check-cargo install-units

help: ## list the targets
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(WARREN_STAMP) ## create .venv, build warren-raft (Rust, release), install warren-orchestrator[dev] editable

$(VENV_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Warren needs Python >= 3.11, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet 'maturin>=1.8,<2'
	@touch $@

$(RAFT_STAMP): $(RAFT_SOURCES) | $(VENV_STAMP) check-cargo
	rm -f target/wheels/warren_raft-*.whl
	$(VENV)/bin/maturin build --release -m rust/Cargo.toml -o target/wheels
	$(PIP) install --force-reinstall --no-deps target/wheels/warren_raft-*.whl
	@touch $@

# Order-only on the wheel: warren needs warren-raft installed, but a rebuilt wheel does not
# require recompiling the Cython bridge. Until issue 14 the distribution was called `warren` (a name
# PyPI gives to another project); a venv made before then still holds it, with a second `warren`
# script: it goes first.
$(WARREN_STAMP): $(WARREN_SOURCES) | $(RAFT_STAMP)
	@! $(PIP) show -q warren 2>/dev/null || $(PIP) uninstall -y -q warren
	$(PIP) install -e '.[dev]'
	@touch $@

check-cargo:
	@command -v cargo >/dev/null 2>&1 || { \
		echo "error: cargo not found. Warren's Raft core is Rust: install the Rust toolchain (rustup)" >&2; \
		echo "       and make sure ~/.cargo/bin is on PATH, then re-run make." >&2; \
		exit 1; }

# --release: shares compiled dependencies with maturin's release build. pytest exits 5 when it
# collected no test; make fails on it, as it should.
test: install check-cargo peers ## run the Rust core's cargo tests, then the Python tests (unit + integration)
	cargo test --release -p warren-raft
	$(PY) -m pytest -q tests

# etcd (Debian's etcd-server) is the benchmark suite's consensus peer: installed when missing and
# apt-get can; otherwise a benchmark run records etcd as missing, with the reason (and the CI smoke run
# of the suite, which requires every peer, fails).
peers: ## install the benchmark peers' packages when missing (Debian's etcd-server)
	@command -v etcd >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } || \
		echo "warning: could not install etcd-server; the etcd benchmark will be recorded as missing" >&2

BENCH_ARGS ?=
bench: install peers ## run the benchmark suite (benches/) with its peers; BENCH_ARGS="--quick" etc.
	$(PY) -m benches $(BENCH_ARGS)

lint: install check-cargo ## ruff, mypy --strict, stubtest of warren_raft's .pyi, clippy
	$(VENV)/bin/ruff check $(wildcard warren tests benches)
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest warren_raft --mypy-config-file pyproject.toml --allowlist rust/stubtest-allowlist.txt
	cargo fmt --check -p warren-raft
	cargo clippy -p warren-raft --features python --all-targets -- -D warnings

# The systemd units (docs/install.md). The /etc/default files are examples with every setting commented
# out: installed only where none exists, mode 0600 (they hold join tokens), never overwritten.
SYSTEMD_DIR ?= /etc/systemd/system
DEFAULT_DIR ?= /etc/default
SYSTEMCTL ?= systemctl
install-units: ## as root: install packaging/systemd's units and /etc/default examples, daemon-reload
	install -d $(SYSTEMD_DIR) $(DEFAULT_DIR)
	install -m 0644 packaging/systemd/warren-manager.service packaging/systemd/warren-worker.service $(SYSTEMD_DIR)/
	@for name in warren-manager warren-worker; do \
		if [ -e $(DEFAULT_DIR)/$$name ]; then echo "kept $(DEFAULT_DIR)/$$name"; \
		else install -m 0600 packaging/systemd/$$name.default $(DEFAULT_DIR)/$$name && \
			echo "wrote $(DEFAULT_DIR)/$$name (edit it)"; fi; \
	done
	$(SYSTEMCTL) daemon-reload

image: ## build the local test/demo image warren-busybox:latest (no registry needed)
	bash scripts/build_image.sh

run: install ## start a single-node cluster on 127.0.0.1:8080 with a demo service, in the foreground
	bash scripts/run_local.sh

clean: ## remove .venv, Python build outputs and built wheels (keeps the Rust build cache)
	rm -rf $(VENV) build dist *.egg-info target/wheels
	rm -f warren/_raft.c warren/_raft.*.so
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './target/*' -prune -exec rm -rf {} +

clean-all: clean ## also remove the Rust build cache (target/); the next build starts from scratch
	rm -rf target
