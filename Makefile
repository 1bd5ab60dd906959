# The commands the README gives. `make test` is what CI runs.
CARGO ?= cargo

.PHONY: setup serve test lint unit api python package fuzz fuzz-long bench

## Starts vmmd on 127.0.0.1:8080 with SQLite under ./data and the local libvirt as a node.
serve: setup
	$(CARGO) run --release -p vmm-server --bin vmmd -- serve

## Installs and starts what the tests need (system packages, libvirtd, .venv).
setup:
	bash .ci/setup

## Everything CI checks: formatting, clippy, every test, the examples, the core's dependencies.
test: setup lint unit api python package fuzz

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# Two files may hold unsafe code: the libvirt calls the `virt` crate does not wrap
	@# (lifecycle events; bulk statistics and the graphics socket).
	test "$$(grep -rlE --include='*.rs' '(allow|expect|warn)\([^)]*unsafe_code' vmm-* tests benches fuzz | sort | tr '\n' ' ')" = "vmm-backends/src/libvirt/events.rs vmm-backends/src/libvirt/ffi.rs "

# Host tests (real libvirtd with QEMU, PostgreSQL) are #[ignore]d so that `cargo test` works
# anywhere; CI includes them. Benchmarks run once each in test mode.
unit:
	VMM_TEST_VMMD=$(CURDIR)/target/debug/vmmd $(CARGO) test --workspace --lib --bins --tests --examples -- --include-ignored
	$(CARGO) test --workspace --benches
	$(CARGO) test --workspace --doc
	$(CARGO) run -q -p vmm-core --example quickstart
	bash .ci/check-core-deps

## The HTTP API against a running vmmd: OpenAPI checks, the README's curl commands, schemathesis.
api:
	bash .ci/api-checks

## The Python package: wheel built by maturin, installed in a fresh venv, stubtest, pytest.
python:
	bash .ci/python

## The Debian package (cargo-deb): built, installed in a clean Debian (mmdebstrap), vmmd started there from its unit's command line, purged.
package:
	bash .ci/package

## Every fuzz target: each kept input and each input of the committed corpus, once (deterministic).
fuzz:
	bash .ci/fuzz

## Open-ended fuzzing, FUZZ_SECONDS (600) per target; grows and minimises fuzz/corpus, crashes become kept inputs (fuzz/regressions).
fuzz-long:
	bash .ci/fuzz-long

## Benchmarks beside their baselines (takes a few minutes).
bench:
	$(CARGO) bench -p vmm-benches
