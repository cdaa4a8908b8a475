# LiteStash: `make demo` and `make test` work on a fresh Debian machine with
# Rust: they install Erlang/OTP and Elixir from Debian's packages when `mix`
# is missing.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench elixir interop-venv no-test-hooks

# The interop tests' Python: a virtualenv under _build with msgpack for
# test/interop/contract.py, so that no system Python package is touched. The
# stamp file makes a second run instant; a change of requirements.txt
# reinstalls. The tests find it through LITESTASH_INTEROP_PYTHON.
INTEROP_VENV := _build/interop-venv
INTEROP_STAMP := $(INTEROP_VENV)/.requirements-installed
INTEROP_REQUIREMENTS := test/interop/requirements.txt

elixir:
	@command -v mix >/dev/null 2>&1 || { \
	  echo "==> mix not found: installing Erlang/OTP and Elixir from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq elixir erlang-dev erlang-nox; }

demo: elixir
	mix run examples/quickstart.exs

test: export LITESTASH_INTEROP_PYTHON := $(abspath $(INTEROP_VENV)/bin/python)
test: elixir interop-venv
	cargo test --workspace --all-features --locked
	mix test
	mix test --only scheduler
	cd bench && mix test

interop-venv: $(INTEROP_STAMP)

$(INTEROP_STAMP): $(INTEROP_REQUIREMENTS)
	@command -v python3 >/dev/null 2>&1 || { \
	  echo "==> the interop tests need python3 (3.11) with its venv module"; exit 1; }
	@echo "==> creating $(INTEROP_VENV): a Python virtualenv with $<"
	python3 -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

RAW_BASELINE := --manifest-path bench/raw_baseline/Cargo.toml

lint: elixir
	cargo fmt --all -- --check
	cargo fmt $(RAW_BASELINE) -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
	cargo clippy $(RAW_BASELINE) --all-targets --locked --target-dir target -- -D warnings
	mix format --check-formatted
	mix compile --warnings-as-errors --force
	cd bench && mix compile --warnings-as-errors --force
	$(MAKE) no-test-hooks

# The product's library has none of the test hooks' NIFs; the :test build,
# compiled from the same sources, has them (so that this check can fail).
no-test-hooks: elixir
	mix compile
	MIX_ENV=test mix compile
	@grep -qa debug_poison_locks priv/native/litestash_nif_test.so || \
	  { echo "the :test build lacks the test hooks: this check proves nothing"; exit 1; }
	@! grep -qa debug_poison_locks priv/native/litestash_nif.so || \
	  { echo "priv/native/litestash_nif.so carries test hooks"; exit 1; }
	@echo "==> no test hooks in priv/native/litestash_nif.so"

# The benchmark, its own Mix project in bench/ (a path dependency on this
# one): `make bench ARGS="--quick"` passes options; `ARGS=--help` lists them.
bench: elixir
	cd bench && MIX_ENV=prod mix litestash.bench $(ARGS)
