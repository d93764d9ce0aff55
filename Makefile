# The commands we actually type. `make help` lists them.
CARGO ?= cargo
SUP   := target/release/sup

.PHONY: help run test check dev bench fuzz deps fmt clean

help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t12

deps: ## install what building and testing need (Rust toolchain, procps, tmux, aiosmtpd)
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "make: cargo not found: installing Debian's rust toolchain"; \
	  apt-get update -qq && apt-get install -y -qq cargo rustc; }
	@command -v ps >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq procps; }
	@command -v tmux >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tmux; }
	@python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet aiosmtpd

run: deps ## build (release) and supervise the bundled sup.d/ in the foreground
	$(CARGO) build --release
	$(SUP) daemon -c sup.d

test: deps ## every test: unit, golden, property and integration (real daemon, real children)
	$(CARGO) test --quiet -- --test-threads=4

check: deps ## formatting and lints, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

dev: ## fast loop: format, lint, test
	$(CARGO) fmt --all
	$(MAKE) check test

bench: deps ## sup vs supervisord vs raw fork/exec, side by side (writes docs/benchmarks.md)
	$(CARGO) build --release
	gcc -O2 -Wall -o bench/raw/raw bench/raw/raw.c
	@test -x bench/.venv/bin/python || python3 -m venv bench/.venv
	bench/.venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	bench/.venv/bin/python bench/bench.py $(BENCH_ARGS)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config duration size cron umask signal control

fuzz: ## run each fuzz target for FUZZ_SECONDS (60), growing fuzz/corpus/ (nightly, cargo-fuzz)
	@$(CARGO) +nightly --version >/dev/null 2>&1 || { \
	  echo "make: cargo-fuzz needs the nightly toolchain: installing it with rustup"; \
	  rustup toolchain install nightly --profile minimal; }
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  nice $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fmt: ## format the code
	$(CARGO) fmt --all

clean: ## remove build output and the demo's logs
	$(CARGO) clean
	rm -rf logs run
