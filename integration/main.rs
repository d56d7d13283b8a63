//! End-to-end tests: the real `teal` binary against a real dockerd and a real
//! HAProxy. One test binary (like ripgrep's `tests/`), a small harness, then
//! one module per behaviour of SPEC.md.
//!
//! Harness, in the order a test uses it:
//! - `util`: unique names, free ports, `wait_until`, the test image.
//! - `docker`: the `docker` CLI with a guard that removes what a test made.
//! - `compose`: compose projects, with v2 (`docker compose`) or v1 (`docker-compose`).
//! - `teal`: the `teal run` fixture (temp state dir, own ports, log on failure).
//! - `http`: a raw HTTP/1.1 client and a new-connection-per-request load generator.
//! - `dockerd`: a private, throw-away Docker daemon for the reconnect test.
//! - `app_image`: the compiled app server (integration/bench/app.rs) in a
//!   test image, for responses busybox cannot give (streamed over a second).
//! - `pebble`: a real ACME server (Debian's pebble) for the ACME tests.
//! - `swarm_bed`: a swarm of several nodes, each a network namespace with
//!   its own dockerd (scripts/swarm-bed.sh), for the multi-node tests.
//! - `browser`: headless chromium through chromium-driver, for the dashboard.
//!
//! Isolation: every test has its own label prefix (`tt<pid>n<counter>`), so the
//! tests share the machine's daemon and still run in parallel.

// Shared with the benchmarks, which also use its image name.
#[allow(dead_code)]
#[path = "bench/app.rs"]
mod app;
mod app_image;
mod browser;
mod compose;
mod compose_file;
mod docker;
mod dockerd;
mod http;
mod pebble;
mod self_signed;
mod swarm_bed;
mod teal;
mod util;

mod acme;
mod canary;
mod cli;
mod compose_deploy;
mod controls;
mod dashboard;
mod dataplane;
mod discovery;
mod drain;
mod examples;
mod health;
mod hold;
mod isolation;
mod labels;
mod multinode;
mod reconnect;
mod rollout;
mod rollout_cmd;
mod routing;
mod runtime_api;
mod status;
mod swarm;
mod switch;
mod template;
mod tls;
