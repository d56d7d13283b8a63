//! A rollout under load: start a second replica, wait until it is served,
//! stop the old one. Clients opening a new connection per request see no
//! failure at any point.

use std::time::{Duration, Instant};

use crate::docker::Docker;
use crate::http::Load;
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 8;
const AFTER_STOP: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_under_load_loses_no_request() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;

    let old = docker.container(&prefix, "old").service("web").run().await;
    teal.wait_served_by(&old.body, CONVERGE).await;

    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;

    let new = docker.container(&prefix, "new").service("web").run().await;
    let first = wait_for(CONVERGE, "the new replica is served under load", || async {
        load.first_seen(&new.body)
    })
    .await;
    docker.stop(&old).await;
    let old_stopped = Instant::now();
    // Load duration, not synchronisation: keep hammering after the stop.
    tokio::time::sleep(AFTER_STOP).await;
    let stats = load.stop().await;

    let start_to_first = first.saturating_duration_since(new.started_at);
    eprintln!(
        "rollout: {} requests, {} failed, start-to-first-routed {} ms, served: {}",
        stats.requests,
        stats.failures,
        start_to_first.as_millis(),
        stats.served()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    let old_last = stats.seen.get(&old.body).and_then(|s| s.last);
    assert!(
        old_last.is_some_and(|t| t <= old_stopped),
        "the old container answered after docker stop returned"
    );
    assert!(stats.seen.get(&new.body).is_some_and(|s| s.count > 0));
}
