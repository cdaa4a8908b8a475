# LiteStash: `make demo` and `make test` work on a fresh Debian machine with
# Rust: they install Erlang/OTP and Elixir from Debian's packages when `mix`
# is missing.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench elixir interop-venv no-test-hooks ra

# The interop tests' Python: a virtualenv under _build with msgpack for
# test/interop/contract.py, so that no system Python package is touched. The
# stamp file makes a second run instant; a change of requirements.txt
# reinstalls. The tests find it through LITESTASH_INTEROP_PYTHON.
INTEROP_VENV := _build/interop-venv
INTEROP_STAMP := $(INTEROP_VENV)/.requirements-installed
INTEROP_REQUIREMENTS := test/interop/requirements.txt

# Ra (RabbitMQ's Raft library) for the clustering tests, taken from
# Debian's rabbitmq-server package, which carries Ra 2.2.0 and its three
# dependencies built for OTP 25: hex.pm is not needed and nothing is
# installed. LiteStash does not depend on Ra; `make test` puts these on the
# code path through ERL_LIBS. The stamp makes a second run instant.
RA_DIR := _build/ra
RA_STAMP := $(RA_DIR)/.extracted
RA_APPS := ra-2.2.0 aten-0.5.8 gen_batch_server-0.8.8 seshat-0.3.2

elixir:
	@command -v mix >/dev/null 2>&1 || { \
	  echo "==> mix not found: installing Erlang/OTP and Elixir from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq elixir erlang-dev erlang-nox; }

demo: elixir
	mix run examples/quickstart.exs

test: export LITESTASH_INTEROP_PYTHON := $(abspath $(INTEROP_VENV)/bin/python)
test: export ERL_LIBS := $(abspath $(RA_DIR))$(if $(ERL_LIBS),:$(ERL_LIBS))
test: elixir interop-venv ra
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

ra: $(RA_STAMP)

$(RA_STAMP):
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "==> fetching Ra from Debian's rabbitmq-server package into $(RA_DIR)"; \
	( cd "$$tmp" && { apt-get download rabbitmq-server >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && apt-get download rabbitmq-server; }; } ); \
	dpkg-deb -x "$$tmp"/rabbitmq-server_*.deb "$$tmp/x"; \
	plugins=$$(ls -d "$$tmp"/x/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins | head -n 1); \
	mkdir -p $(RA_DIR); \
	for app in $(RA_APPS); do \
	  test -d "$$plugins/$$app/ebin" || { echo "$$app is not in $$plugins"; exit 1; }; \
	  rm -rf "$(RA_DIR)/$$app"; cp -r "$$plugins/$$app" $(RA_DIR)/; \
	done; \
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
# one): `make bench ARGS="--quick"` passes options; `ARGS=--help` lists them
# and runs nothing. Then the replicated figures (three local member nodes
# against one node, and failover times: examples/cluster_bench.exs, about
# 40 s, with Ra from `make ra`); CLUSTER_ARGS passes its options (--w1 N,
# --w3 N, --kills N).
bench: export ERL_LIBS := $(abspath $(RA_DIR))$(if $(ERL_LIBS),:$(ERL_LIBS))
bench: elixir ra
	cd bench && MIX_ENV=prod mix litestash.bench $(ARGS)
	@case " $(ARGS) " in *" --help "*|*" -h "*) ;; *) \
	  echo "==> replicated writes: three local member nodes against one node (examples/cluster_bench.exs)"; \
	  MIX_ENV=test mix run examples/cluster_bench.exs $(CLUSTER_ARGS);; esac
