# LiteStash: `make demo` and `make test` work on a fresh Debian machine with
# Rust: they install Erlang/OTP and Elixir from Debian's packages when `mix`
# is missing.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench elixir

elixir:
	@command -v mix >/dev/null 2>&1 || { \
	  echo "==> mix not found: installing Erlang/OTP and Elixir from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq elixir erlang-dev erlang-nox; }

demo: elixir
	mix run examples/quickstart.exs

test: elixir
	cargo test --workspace --locked
	mix test

lint: elixir
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	mix format --check-formatted
	mix compile --warnings-as-errors --force

bench: elixir
	MIX_ENV=prod mix litestash.bench
