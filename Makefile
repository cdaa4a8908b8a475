# LiteStash: `make demo` and `make test` work on a fresh Debian machine with
# Rust: they install Erlang/OTP and Elixir from Debian's packages when `mix`
# is missing.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench elixir interop-venv

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
	cargo test --workspace --locked
	mix test
	cd bench && mix test

interop-venv: $(INTEROP_STAMP)

$(INTEROP_STAMP): $(INTEROP_REQUIREMENTS)
	@command -v python3 >/dev/null 2>&1 || { \
	  echo "==> the interop tests need python3 (3.11) with its venv module"; exit 1; }
	@echo "==> creating $(INTEROP_VENV): a Python virtualenv with $<"
	python3 -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

lint: elixir
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	mix format --check-formatted
	mix compile --warnings-as-errors --force
	cd bench && mix compile --warnings-as-errors --force

# The benchmark, its own Mix project in bench/ (a path dependency on this
# one): `make bench ARGS="--quick"` passes options; `ARGS=--help` lists them.
bench: elixir
	cd bench && MIX_ENV=prod mix litestash.bench $(ARGS)
