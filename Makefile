.PHONY: run test services bench lint fmt

# Start PostgreSQL and Redis (installing them if needed), bootstrap a demo
# org on an empty database, and serve the API on 127.0.0.1:8080.
run:
	bash scripts/run.sh

# The same services, then the whole test suite.
test: services
	bash scripts/test-deps.sh
	cargo test --all-targets

services:
	bash scripts/services.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Benchmarks (release build); figures are printed and quoted in the README.
bench: services
	bash scripts/bench.sh
