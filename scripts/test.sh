#!/usr/bin/env bash
# Run every check teal has: formatting, clippy, unit tests and the Docker
# integration tests. Installs what is missing (Debian, as root) and starts
# dockerd if no Docker daemon answers. CI runs exactly this (.ci/run).
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$TEAL_ROOT"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Test run deadline (seconds) once everything is compiled.
TEST_TIMEOUT="${TEAL_TEST_TIMEOUT:-900}"

started=$SECONDS
step() { say "$* (+$((SECONDS - started))s)"; }

step "checking the Rust toolchain"
ensure_cargo
ensure_rust_components

step "checking system packages"
# chromium, headless through chromium-driver, is the dashboard test's browser.
ensure_packages chromium chromium-driver

step "checking the Docker daemon"
ensure_docker

step "checking Docker Compose v2 (the tests run v1 and v2)"
ensure_compose_v2

step "cargo fmt --check"
cargo fmt --check -- --color never || die "code is not formatted: run 'cargo fmt'"

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || die "clippy found problems (see above)"

build_test_images

step "building tests (cargo test --no-run)"
cargo test --no-run || die "tests do not compile"

step "running all tests (cargo test, deadline ${TEST_TIMEOUT}s)"
rc=0
timeout -k 30 "$TEST_TIMEOUT" cargo test || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    die "tests did not finish within ${TEST_TIMEOUT}s"
elif [ "$rc" -ne 0 ]; then
    die "tests failed (cargo test exit $rc)"
fi

step "all checks passed"
