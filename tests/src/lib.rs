//! vmm-tests: end-to-end tests across the vmm crates. The tests live in `tests/`.
