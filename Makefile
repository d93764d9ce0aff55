# The commands we actually type. `make help` lists them.
CARGO   ?= cargo
RUSTC   ?= rustc
SUP     := target/release/sup
PREFIX  ?= /usr/local
DESTDIR ?=
# The interpreter the tests use for aiosmtpd when the system python3 cannot import it.
TEST_VENV := .venv-test
# The oldest rustc that builds this crate, as Cargo.toml declares it.
RUST_VERSION := $(shell sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)

BINDIR  := $(DESTDIR)$(PREFIX)/bin
MANDIR  := $(DESTDIR)$(PREFIX)/share/man/man1
SHARE   := $(DESTDIR)$(PREFIX)/share
# Where systemd looks for units of packages installed under PREFIX (/usr, /usr/local).
UNITDIR := $(DESTDIR)$(PREFIX)/lib/systemd/system

.PHONY: help build run test check dev bench fuzz deps demo-deps test-deps fmt man install install-built clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t12

# A rustup toolchain in ~/.cargo comes first, so one that `deps` just installed is the one used.
export PATH := $(HOME)/.cargo/bin:$(PATH)
# How `deps` installs Rust when it is missing or too old (Debian 12's own rustc is 1.63, too
# old for this crate, so distribution packages are never used).
RUSTUP_INIT ?= curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable

deps: ## make sure cargo and rustc >= Cargo.toml's rust-version are here (rustup if not)
	@too_old() { have=$$($(RUSTC) --version 2>/dev/null | awk '{print $$2}'); \
	  [ -z "$$have" ] || [ "$$(printf '%s\n%s\n' "$(RUST_VERSION)" "$$have" | sort -V | head -n1)" != "$(RUST_VERSION)" ]; }; \
	if command -v $(CARGO) >/dev/null 2>&1 && ! too_old; then exit 0; fi; \
	if command -v rustup >/dev/null 2>&1; then \
	  echo "make: Rust $(RUST_VERSION) or newer is needed: rustup update stable"; \
	  rustup update stable && rustup default stable; \
	else \
	  echo "make: Rust $(RUST_VERSION) or newer is needed: installing it with rustup into $$HOME/.cargo"; \
	  command -v curl >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && apt-get install -y -qq curl ca-certificates >/dev/null; }; \
	  sh -c "$(RUSTUP_INIT)"; \
	fi; \
	if ! command -v $(CARGO) >/dev/null 2>&1 || too_old; then \
	  echo "make: still no Rust $(RUST_VERSION) or newer; install it by hand:" >&2; \
	  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2; \
	  exit 1; fi

# `apt_install PKG…` for the recipes below: quiet, and false where there is no apt-get.
APT_INSTALL = apt_install() { command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && apt-get install -y -qq "$$@"; } >/dev/null 2>&1; }

# What the bundled sup.d/ demo runs besides sup, as COMMAND:PACKAGE: every job's cmd starts
# with one of these (sh for web, worker, flaky and tick; python3 for db and api), which a test
# checks. Only these: what the tests alone use stays in test-deps.
DEMO_NEEDS := sh:dash python3:python3

demo-deps: ## install what the sup.d/ demo runs (python3 for db and api) if missing
	@$(APT_INSTALL); \
	for need in $(DEMO_NEEDS); do \
	  command -v $${need%%:*} >/dev/null 2>&1 || apt_install $${need#*:} || { \
	    echo "make: $${need%%:*} is missing: install the $${need#*:} package" >&2; exit 1; }; \
	done

# What the integration tests run besides sup: ps, tmux, python3, promtool and prometheus (from
# Debian's prometheus package: the HTTP tests check /metrics with one and scrape it with the
# other), chromium (the dashboard tests drive it headless), curl and openssl (the HTTPS tests
# make a self-signed certificate and fetch with it) and aiosmtpd (the SMTP server the
# notification tests send to). aiosmtpd comes from apt where that works for the python3 on
# PATH, else from a venv under the repo that the tests look for first. systemd-analyze
# (Debian's systemd package, installed, never booted) checks the unit when it installs; without it the packaging test says the unit went unchecked. The
# same package's systemd-notify, and Debian's postgresql (its server, run in the foreground),
# are the jobs that say READY=1 as another user; their tests say so when they are skipped.
test-deps: deps ## install what the tests need (procps, tmux, python3, prometheus, chromium, curl, openssl, aiosmtpd; systemd and postgresql if they install)
	@$(APT_INSTALL); \
	for need in ps:procps tmux:tmux python3:python3 promtool:prometheus prometheus:prometheus chromium:chromium curl:curl openssl:openssl; do \
	  command -v $${need%%:*} >/dev/null 2>&1 || apt_install $${need#*:} || { \
	    echo "make: $${need%%:*} is missing: install the $${need#*:} package" >&2; exit 1; }; \
	done; \
	{ command -v systemd-analyze && command -v systemd-notify; } >/dev/null 2>&1 || apt_install systemd || \
	  echo "make: systemd-analyze and systemd-notify are missing: the unit's syntax and notify under user: go unchecked" >&2; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql || \
	  echo "make: postgres is missing: the test of postgres under user: with ready: notify will be skipped" >&2; \
	if [ -x $(TEST_VENV)/bin/python ] && $(TEST_VENV)/bin/python -c 'import aiosmtpd' 2>/dev/null; then exit 0; fi; \
	python3 -c 'import aiosmtpd' 2>/dev/null && exit 0; \
	apt_install python3-aiosmtpd; \
	python3 -c 'import aiosmtpd' 2>/dev/null && exit 0; \
	echo "make: python3 cannot import aiosmtpd: installing it into $(TEST_VENV)/"; \
	{ python3 -m venv $(TEST_VENV) || { apt_install python3-venv && python3 -m venv $(TEST_VENV); }; } && \
	$(TEST_VENV)/bin/pip install --quiet --disable-pip-version-check aiosmtpd

build: deps ## the release binary, target/release/sup
	$(CARGO) build --release

run: build demo-deps ## build (release) and supervise the bundled sup.d/ in the foreground
	$(SUP) daemon -c sup.d

man: build ## the man page, generated from the CLI's definitions: target/man/sup.1
	@mkdir -p target/man
	$(SUP) __man > target/man/sup.1

install: build ## install sup, its man page, bash/zsh/fish completions and contrib/ (a systemd unit) under $(DESTDIR)$(PREFIX)
	@$(MAKE) --no-print-directory install-built

# `make install` without the build: installs $(SUP) as it is (the tests install theirs).
install-built:
	install -D -m 755 $(SUP) $(BINDIR)/sup
	install -d $(MANDIR) $(SHARE)/bash-completion/completions $(SHARE)/zsh/site-functions \
	  $(SHARE)/fish/vendor_completions.d
	$(SUP) __man > $(MANDIR)/sup.1
	$(SUP) completions bash > $(SHARE)/bash-completion/completions/sup
	$(SUP) completions zsh > $(SHARE)/zsh/site-functions/_sup
	$(SUP) completions fish > $(SHARE)/fish/vendor_completions.d/sup.fish
	install -d $(SHARE)/sup/contrib $(UNITDIR)
	cp -R contrib/. $(SHARE)/sup/contrib/
	sed 's|/usr/local/bin/sup|$(PREFIX)/bin/sup|g' contrib/systemd/sup.service > $(UNITDIR)/sup.service
	cp $(UNITDIR)/sup.service $(SHARE)/sup/contrib/systemd/sup.service
	chmod 644 $(UNITDIR)/sup.service $(SHARE)/sup/contrib/systemd/sup.service

test: test-deps ## every test: unit, golden, property and integration (real daemon, real children)
	$(CARGO) test --quiet -- --test-threads=4

check: deps ## formatting and lints, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

dev: ## fast loop: format, lint, test
	$(CARGO) fmt --all
	$(MAKE) check test

bench: build ## sup vs supervisord vs raw fork/exec, side by side (writes docs/benchmarks.md)
	gcc -O2 -Wall -o bench/raw/raw bench/raw/raw.c
	@test -x bench/.venv/bin/python || python3 -m venv bench/.venv
	bench/.venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	bench/.venv/bin/python bench/bench.py $(BENCH_ARGS)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config duration size cron umask signal control state http supervisord

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

clean: ## remove build output, the demo's logs and socket, and the test venv
	$(CARGO) clean
	rm -rf logs run $(TEST_VENV)
