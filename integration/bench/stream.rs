//! Streamed responses through a deploy: each client GETs
//! `/stream?ms=1000` (the app sends its body in pieces over 1 s) while the
//! one container of `web`, which exits at once on SIGTERM (`--init`), is
//! replaced:
//!
//! - `stream-rollout`: by `teal rollout web`, which stops the old container
//!   only once no request is in flight on it;
//! - `stream-stop`: by the scale-up-and-stop recipe, `docker stop` of the
//!   old container once the new one is served (teal drains it at the stop
//!   request, but the streams under way die with the app).
//!
//! Prints requests, failed (any reason), truncated (a 200 whose body ended
//! short of its Content-Length), p99 and max latency.

use std::time::Duration;

use crate::load::{percentile, Connections, Sample};
use crate::stack::{wait_until, Teal};
use crate::{steady, Steady, Traffic};

/// One second of streaming per request: 20 clients, each one stream at a time.
const STREAMS: Traffic = Traffic {
    path: "/stream?ms=1000",
    rate: 20,
    workers: 20,
    connections: Connections::Close,
};

#[derive(Debug, Clone, Copy)]
pub enum How {
    Rollout,
    Stop,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Rollout => "stream-rollout",
            How::Stop => "stream-stop",
        }
    }
}

pub struct StreamRow {
    name: &'static str,
    requests: usize,
    failed: usize,
    truncated: u64,
    p99: f64,
    max: f64,
}

pub async fn scenario(how: How, duration: Duration) -> StreamRow {
    let Steady {
        proxy: teal,
        mut containers,
        old,
        load,
        ..
    } = steady::<Teal>(how.name(), STREAMS, &["--init"], duration).await;
    match how {
        How::Rollout => {
            let (ok, output) = teal.cli(&["rollout", "web", "--drain", "10s"]);
            if !ok {
                eprintln!("  {}: teal rollout failed:\n{output}", how.name());
            }
        }
        How::Stop => {
            let new = containers.run("web", &["--init"], &[]);
            if wait_until(Duration::from_secs(40), "the new container is served", async || {
                load.first_seen(&new).is_some()
            })
            .await
            {
                containers.stop(&old, 2);
                containers.remove(&old);
            }
        }
    }
    let (samples, errors) = load.finish().await;
    if !errors.is_empty() {
        eprintln!("  {}: errors {errors:?}", how.name());
    }
    let all: Vec<&Sample> = samples.iter().collect();
    StreamRow {
        name: how.name(),
        requests: samples.len(),
        failed: samples.iter().filter(|s| !s.ok).count(),
        truncated: errors.get("truncated").copied().unwrap_or(0),
        p99: percentile(&all, 99.0),
        max: percentile(&all, 100.0),
    }
}

impl std::fmt::Display for StreamRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} streamed requests (1 s each), {} failed, {} truncated, p99 {:.1} ms, max {:.1} ms",
            self.name, self.requests, self.failed, self.truncated, self.p99, self.max
        )
    }
}
