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
# Inputs of the editable `warren` install (the bridge is compiled there: warren/_raft.py, a symlink to
# warren/_raft_py.py, typed by warren/_raft.pxd).
WARREN_SOURCES := pyproject.toml setup.py warren/_raft_py.py warren/_raft.pxd

.DEFAULT_GOAL := help
.PHONY: help install check-py test bench chaos peers lint run image clean clean-all check-cargo install-units fuzz fuzz-cmin fuzz-tools screenshots browser \
	wheels wheels-core wheels-warren wheels-audit wheels-tools wheels-deps-debian-rust wheels-test wheels-test-arm64

help: ## list the targets
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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
test: install check-cargo peers browser check-py ## ruff, mypy, import layers; the Rust core's cargo tests; the Python tests
	cargo test --release -p warren-raft
	$(PY) -m pytest -q tests

# etcd (Debian's etcd-server) is the benchmark suite's consensus peer: installed when missing and
# apt-get can; otherwise a benchmark run records etcd as missing, with the reason (and the CI smoke run
# of the suite, which requires every peer, fails).
peers: ## install the benchmark peers' packages when missing (Debian's etcd-server, wrk)
	@command -v etcd >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } || \
		echo "warning: could not install etcd-server; the etcd benchmark will be recorded as missing" >&2
	@command -v wrk >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		echo "warning: could not install wrk; the networking benchmark will report no requests/s" >&2

BENCH_ARGS ?=
bench: install peers image ## run the benchmark suite (benches/) with its peers; BENCH_ARGS="--quick" etc.
	$(PY) -m benches $(BENCH_ARGS)

# The chaos suite (tests/chaos, issue 19): faults one after another on 5 managers and 2 workers in network
# namespaces, under a checked workload; `make test` runs a bounded smoke of the same test. The report
# (benches/results/chaos.md, .json) is what the README quotes. CHAOS_SEED=N replays a run's choices.
CHAOS_SECONDS ?= 1800
CHAOS_SEED ?=
chaos: install ## the chaos suite for CHAOS_SECONDS (30 min), report in benches/results/chaos.md; CHAOS_SEED=N replays
	WARREN_CHAOS_SECONDS=$(CHAOS_SECONDS) WARREN_CHAOS_SEED=$(CHAOS_SEED) WARREN_CHAOS_REPORT=benches/results \
		$(PY) -m pytest -q -s -p no:cacheprovider tests/chaos

# The store's stateful test (tests/unit/store/test_store_stateful.py, issue 19) at length: thousands of
# command sequences through snapshots, installs and restarts, instead of the test run's quick profile.
.PHONY: stateful-long
stateful-long: install ## the store's Hypothesis stateful test with its long profile (many minutes)
	WARREN_HYPOTHESIS_PROFILE=long $(PY) -m pytest -q -p no:cacheprovider --timeout=0 tests/unit/store/test_store_stateful.py

# The Python checks that fail the build (`make test` runs them first): ruff, mypy --strict, and the
# import-layering contracts in pyproject.toml ([tool.importlinter]).
check-py: install
	$(VENV)/bin/ruff check $(wildcard warren tests benches)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

lint: install check-cargo check-py ## ruff, mypy --strict, import layers, stubtest of warren_raft's .pyi, clippy
	$(PY) -m mypy.stubtest warren_raft --mypy-config-file pyproject.toml --allowlist rust/stubtest-allowlist.txt
	cargo fmt --check -p warren-raft
	cargo clippy -p warren-raft --features python --all-targets -- -D warnings

# Fuzzing (issue 19, docs/fuzzing.md): the cargo-fuzz targets in rust/fuzz (the Raft frame decoder, the
# log entry decoder and damaged log files, snapshot install), FUZZ_SECONDS each, one after the other (the
# machine's cores are shared), on nightly, with AddressSanitizer (cargo-fuzz's default: leaks are caught too).
# A crash, a panic, a leak, an input slower than FUZZ_TIMEOUT s or a process above FUZZ_RSS_MB fails the run;
# the input is left in rust/fuzz/artifacts/<target>/. New inputs land in rust/fuzz/corpus/<target>/:
# `make fuzz-cmin` minimises them before they are committed. cargo-fuzz is installed when missing.
# Scratch files (logs, snapshots) go to FUZZ_TMP. Never part of `make test`: rust/tests/fuzz_corpus.rs
# replays the corpus there, on stable.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= frame log_entry snapshot_install
FUZZ_RSS_MB ?= 1024
FUZZ_TIMEOUT ?= 10
FUZZ_TMP ?= $(if $(wildcard /dev/shm),/dev/shm,/tmp)
FUZZ_ARGS ?=
# redb leaks a few hundred bytes on some damaged files it refuses at open (an error built in
# Database::new's version checks; found by LeakSanitizer, docs/decisions.md, issue 19): not ours to
# fix, and a refused log stops the node. Leak detection stays on for the other targets.
# (LeakSanitizer's check at exit too, hence ASAN_OPTIONS.)
FUZZ_ARGS_log_entry ?= -detect_leaks=0
FUZZ_ENV_log_entry ?= ASAN_OPTIONS=detect_leaks=0

fuzz-tools: check-cargo
	@cargo +nightly --version >/dev/null 2>&1 || { \
		echo "error: make fuzz needs Rust nightly (rustup toolchain install nightly)" >&2; exit 1; }
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

fuzz: fuzz-tools ## fuzz the Raft frame decoder, log decoder, snapshot install: FUZZ_SECONDS (600) each, nightly
	cd rust && cargo +nightly fuzz build -O
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		case $$t in log_entry) extra="$(FUZZ_ARGS_log_entry)"; env="$(FUZZ_ENV_log_entry)";; \
			*) extra=""; env="";; esac; \
		(cd rust && env TMPDIR=$(FUZZ_TMP) $$env cargo +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) \
			-rss_limit_mb=$(FUZZ_RSS_MB) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 $$extra $(FUZZ_ARGS)) || \
			{ echo "fuzz $$t FAILED: the input is in rust/fuzz/artifacts/$$t/" >&2; exit 1; }; \
	done

fuzz-cmin: fuzz-tools ## minimise rust/fuzz/corpus (after make fuzz, before committing it)
	@for t in $(FUZZ_TARGETS); do \
		case $$t in log_entry) extra="$(FUZZ_ARGS_log_entry)"; env="$(FUZZ_ENV_log_entry)";; \
			*) extra=""; env="";; esac; \
		(cd rust && env TMPDIR=$(FUZZ_TMP) $$env cargo +nightly fuzz cmin -O $$t -- -rss_limit_mb=$(FUZZ_RSS_MB) \
			-timeout=$(FUZZ_TIMEOUT) $$extra) || exit 1; \
	done

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

# Wheels that install with pip and no compiler (issue 14; docs/install.md, docs/decisions.md).
# - warren-raft: abi3 (cp311), linked by zig against glibc 2.28 (manylinux_2_28), one per WHEEL_ARCHES
#   entry. x86_64 with rustup's toolchain (whatever cargo is on PATH); aarch64 with Debian's rustc-web and
#   cargo-web (/usr/bin/rustc, /usr/bin/cargo) and libstd-rust-web-dev:arm64, the aarch64 standard library
#   that rustup cannot download here (apt-get'd only when missing, as root).
# - warren-orchestrator: one pure-Python wheel (py3-none-any, built with WARREN_NO_EXTENSIONS=1; the
#   Cython bridge has a pure-Python twin that warren.raft_bridge falls back to).
# Own cargo target dir: `make install`'s release cache (target/release) stays valid.
WHEEL_ARCHES ?= x86_64 aarch64
DIST ?= dist
WHEELS_CARGO_DIR := target/wheels-build
WHEELS_TOOLS_STAMP := $(VENV)/.wheels-tools-stamp
ARM64_ROOT ?= .wheels-cache/arm64-bookworm
# maturin finds zig as `python3 -m ziglang`: the venv's bin goes first on PATH.
VENV_BIN := $(abspath $(VENV))/bin

wheels: ## build dist/: warren-raft manylinux_2_28 abi3 wheels (WHEEL_ARCHES), warren-orchestrator's, auditwheel
	@mkdir -p $(DIST)
	@for arch in $(WHEEL_ARCHES); do $(MAKE) --no-print-directory wheels-core ARCH=$$arch || exit 1; done
	@$(MAKE) --no-print-directory wheels-warren wheels-audit

$(WHEELS_TOOLS_STAMP): | $(VENV_STAMP)
	$(PIP) install --quiet 'ziglang>=0.13' 'auditwheel>=6'
	@touch $@

wheels-tools: $(WHEELS_TOOLS_STAMP)

# Debian's Rust and the target's standard library (DEBARCH: arm64 for aarch64, armhf for armv7).
DEBARCH_aarch64 := arm64
DEBARCH_armv7 := armhf
wheels-deps-debian-rust:
	@dpkg -s rustc-web cargo-web libstd-rust-web-dev:$(DEBARCH) >/dev/null 2>&1 || { \
		dpkg --print-foreign-architectures | grep -qx $(DEBARCH) || dpkg --add-architecture $(DEBARCH); \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			rustc-web cargo-web libstd-rust-web-dev:$(DEBARCH) >/dev/null; }

ARCH ?= x86_64
WHEELS_PATH_x86_64 := $(VENV_BIN):$(PATH)
WHEELS_ENV_x86_64 :=
WHEELS_PATH_aarch64 := $(VENV_BIN):/usr/bin:$(PATH)
WHEELS_ENV_aarch64 := CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc
WHEELS_PATH_armv7 := $(WHEELS_PATH_aarch64)
WHEELS_ENV_armv7 := $(WHEELS_ENV_aarch64)
WHEELS_TRIPLE_x86_64 := x86_64-unknown-linux-gnu
WHEELS_TRIPLE_aarch64 := aarch64-unknown-linux-gnu
WHEELS_TRIPLE_armv7 := armv7-unknown-linux-gnueabihf
WHEELS_PLAT_x86_64 := x86_64
WHEELS_PLAT_aarch64 := aarch64
WHEELS_PLAT_armv7 := armv7l
wheels-core: DEBARCH = $(DEBARCH_$(ARCH))
wheels-core: $(WHEELS_TOOLS_STAMP) $(if $(filter-out x86_64,$(ARCH)),wheels-deps-debian-rust,check-cargo)
	@test -n "$(WHEELS_TRIPLE_$(ARCH))" || { echo "error: ARCH=$(ARCH): x86_64, aarch64 or armv7" >&2; exit 1; }
	rm -f $(DIST)/warren_raft-*_$(WHEELS_PLAT_$(ARCH)).whl
	@PATH="$(WHEELS_PATH_$(ARCH))" $(WHEELS_ENV_$(ARCH)) sh -c 'echo "== warren-raft for $(ARCH): cargo $$(command -v $${CARGO:-cargo}) ($$($${CARGO:-cargo} --version)), $$($${RUSTC:-rustc} --version) ($$(command -v $${RUSTC:-rustc})), zig $$(python3 -m ziglang version)"'
	@start=$$(date +%s); \
	PATH="$(WHEELS_PATH_$(ARCH))" $(WHEELS_ENV_$(ARCH)) CARGO_TARGET_DIR=$(WHEELS_CARGO_DIR) \
		$(VENV)/bin/maturin build --release -m rust/Cargo.toml --zig --target $(WHEELS_TRIPLE_$(ARCH)) \
		--compatibility manylinux_2_28 -o $(DIST) && \
	echo "== warren-raft for $(ARCH) built in $$(( $$(date +%s) - start )) s"

# Built from a copy of the sources without the editable install's build products (warren/_raft.c and
# .so; the egg-info's SOURCES.txt would carry them into the wheel).
WHEELS_SRC := target/wheels-src
wheels-warren: | $(VENV_STAMP)
	rm -f $(DIST)/warren_orchestrator-*.whl
	rm -rf $(WHEELS_SRC) && mkdir -p $(WHEELS_SRC)
	tar -cf - --exclude='*.so' --exclude='*.c' --exclude=__pycache__ pyproject.toml setup.py README.md warren | \
		tar -xf - -C $(WHEELS_SRC)
	WARREN_NO_EXTENSIONS=1 $(PIP) wheel --quiet --no-deps -w $(DIST) ./$(WHEELS_SRC)
	@$(PY) -c 'import sys, zipfile, glob; w = glob.glob("$(DIST)/warren_orchestrator-*-py3-none-any.whl"); \
		assert len(w) == 1, w; bad = [n for n in zipfile.ZipFile(w[0]).namelist() if n.endswith((".so", ".c", ".pyx"))]; \
		sys.exit(f"{w[0]}: compiled or source files in a pure wheel: {bad}" if bad else 0)'
	@$(PY) -c 'import sys, zipfile, glob; w = glob.glob("$(DIST)/warren_orchestrator-*-py3-none-any.whl")[0]; \
		names = set(zipfile.ZipFile(w).namelist()); \
		gone = [f for f in ("index.html", "app.js", "api.js", "stream.js", "timeline.js", "style.css") \
			if "warren/dashboard/static/" + f not in names]; \
		sys.exit(f"{w}: the dashboard pages are missing: {gone}" if gone else 0)'

wheels-audit: $(WHEELS_TOOLS_STAMP)
	$(PY) scripts/wheels_audit.py $(VENV)/bin/auditwheel $(DIST)

WHEELS_TEST_DIR := target/wheels-test
wheels-test: ## fresh venv, no cargo/C compiler on PATH: pip install dist/'s wheels, smoke (cluster, service, stop)
	@for arch in $(WHEEL_ARCHES); do case $$arch in x86_64) ;; *) echo "wheels-test runs the $$(uname -m) wheels here; $$arch: make wheels-test-arm64";; esac; done
	bash scripts/wheels_test.sh $(PYTHON) $(DIST) $(WHEELS_TEST_DIR)

wheels-test-arm64: ## as root: the same smoke with the aarch64 wheels in an emulated arm64 Debian root (slow)
	@dpkg -s debootstrap qemu-user-static binfmt-support >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static binfmt-support >/dev/null; }
	bash scripts/wheels_test_arm64.sh $(ARM64_ROOT) $(DIST)

# The dashboard's browser tests (tests/integration/test_dashboard_browser.py) need Debian's chromium and
# chromium-driver; installed here when missing and apt-get can (as root).
# Without apt-get (or not as root) it only warns: the browser tests then skip (and fail under CI=1).
browser: ## install Debian's chromium and chromium-driver (the dashboard's browser tests) when missing
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || \
		! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		echo "warning: could not install chromium and chromium-driver; the dashboard's browser tests will skip" >&2

screenshots: install browser ## run the dashboard's browser tests and save each page to docs/images/dashboard-<page>.png
	WARREN_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/integration/test_dashboard_browser.py

image: ## build the local test/demo image warren-busybox:latest (no registry needed)
	bash scripts/build_image.sh

run: install ## start a single-node cluster on 127.0.0.1:8080 with a demo service, in the foreground
	bash scripts/run_local.sh

clean: ## remove .venv, Python build outputs and built wheels (keeps the Rust build cache)
	rm -rf $(VENV) build dist *.egg-info target/wheels target/wheels-test
	rm -f warren/_raft.c warren/_raft.*.so
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './target/*' -prune -exec rm -rf {} +

clean-all: clean ## also remove the Rust build cache (target/); the next build starts from scratch
	rm -rf target
