# dualrouter: the two commands of the README, and the pieces they are made of.
#   make run   set everything up and run the proxy on its embedded defaults
#   make test  set everything up and run the whole test suite (what CI runs)

CONFIG ?= config/dualrouter.yaml

.PHONY: run test setup build lint unit bench clean-venv

setup:
	@scripts/setup.sh

run: setup
	cargo build --locked --release
	./target/release/dualrouter serve --config $(CONFIG)

lint:
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

test: setup lint
	cargo test --locked --no-fail-fast --workspace --lib --bins --tests

# On a CI machine (CI set, as CI services do) every build is a clean one: incremental compilation
# would only add its caches to target/ (a fresh clone's target/: 4.7 GB with them, 3.4 GB without),
# and disk is what a CI machine ran out of once.
ifdef CI
test lint: export CARGO_INCREMENTAL = 0
endif

bench: setup
	cargo build --locked --release
	scripts/bench-proxy.sh
