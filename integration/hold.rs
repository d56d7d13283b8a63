//! Holding requests through the gap: while a service has no ready server
//! (its only container restarting, or stopped and replaced), HAProxy holds
//! new requests until one is ready, bounded by `--hold` / `teal.hold`.

use std::time::{Duration, Instant};

use crate::docker::Docker;
use crate::http::{self, Load};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 8;
const AFTER: Duration = Duration::from_secs(1);
/// A Docker HEALTHCHECK that passes once httpd answers: teal routes the
/// container only then. Without one, a server is ready the moment its
/// container starts, and a held request released then can meet an app that
/// is not listening yet (see docs/operations.md).
const HEALTHCHECK: &[&str] = &[
    "--health-cmd",
    "wget -q -O /dev/null http://127.0.0.1:8080/",
    "--health-interval",
    "250ms",
    "--health-timeout",
    "2s",
    "--health-start-period",
    "30s",
];

/// Every request that arrived in the gap was held, and so was the retry of
/// a request in flight on the app when it died at SIGTERM (the backend's
/// `teal_hold` server takes retries too): none failed.
pub fn assert_gap_held(stats: &crate::http::LoadStats, held: f64, teal: &Teal) {
    assert!(held > 0.0, "no request was held: the gap was not exercised");
    assert_eq!(stats.failures, 0, "failed requests: {:?}\n{}", stats.errors, teal.log());
}

/// Requests of `service` the hold script let through to a server, from `/metrics`.
pub async fn released(teal: &Teal, service: &str) -> f64 {
    teal.metric(&format!(
        "teal_held_requests_total{{service=\"{service}\",outcome=\"released\"}}"
    ))
    .await
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_restart_of_the_only_replica_holds_the_gap() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).args(&["--hold", "15s"]).start().await;
    let web = docker
        .container(&prefix, "web")
        .service("web")
        .args(HEALTHCHECK)
        .run()
        .await;
    teal.wait_served_by(&web.body, CONVERGE).await;

    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let before = load.requests();
    docker.run(&["restart", "-t", "10", &web.id]).await;
    wait_until(CONVERGE, "the restarted replica serves under load", || async {
        load.requests() > before + 100
    })
    .await;
    tokio::time::sleep(AFTER).await;
    let stats = load.stop().await;
    let held = released(&teal, "web").await;
    eprintln!(
        "docker restart: {} requests, {} failed, {held} held",
        stats.requests, stats.failures
    );
    assert_gap_held(&stats, held, &teal);
}

/// What `docker-compose up -d` does to a one-replica service whose image
/// changed: stop the old container, create and start the new one, remove
/// the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stopped_then_replaced_holds_the_gap() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).args(&["--hold", "15s"]).start().await;
    let old = docker
        .container(&prefix, "old")
        .service("web")
        .args(HEALTHCHECK)
        .run()
        .await;
    teal.wait_served_by(&old.body, CONVERGE).await;

    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    docker.stop(&old).await;
    let new = docker
        .container(&prefix, "new")
        .service("web")
        .args(HEALTHCHECK)
        .run()
        .await;
    docker.run(&["rm", &old.id]).await;
    wait_until(CONVERGE, "the replacement serves under load", || async {
        load.first_seen(&new.body).is_some()
    })
    .await;
    tokio::time::sleep(AFTER).await;
    let stats = load.stop().await;
    let held = released(&teal, "web").await;
    eprintln!(
        "stop then replace: {} requests, {} failed, {held} held, served: {}",
        stats.requests,
        stats.failures,
        stats.served()
    );
    assert_gap_held(&stats, held, &teal);
}

/// `teal.hold=0`: a 503 at once; a bound: a 503 once it passes. Both with
/// Retry-After, and counted in /status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_ready_server_a_503_with_retry_after_at_once_or_past_the_bound() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).args(&["--hold", "15s"]).start().await;
    let now_host = format!("now.{prefix}.test");
    let bound_host = format!("bound.{prefix}.test");
    let off = docker
        .container(&prefix, "off")
        .service("off")
        .label("host", &now_host)
        .label("hold", "0")
        .run()
        .await;
    let bounded = docker
        .container(&prefix, "bounded")
        .service("bounded")
        .label("host", &bound_host)
        .label("hold", "1500ms")
        .run()
        .await;
    for (host, body) in [(&now_host, &off.body), (&bound_host, &bounded.body)] {
        wait_until(CONVERGE, &format!("{host} is served"), || async {
            http::get(teal.http, host, "/")
                .await
                .is_ok_and(|r| r.body.trim() == body.as_str())
        })
        .await;
    }
    docker.stop(&off).await;
    docker.stop(&bounded).await;

    let answer = |host: String| async move {
        let start = Instant::now();
        let response = http::get(teal.http, &host, "/").await.expect("an answer");
        (response, start.elapsed())
    };
    wait_until(CONVERGE, "both services are left without a server", || async {
        teal.report()
            .await
            .is_ok_and(|report| report.services.len() == 2 && report.services.iter().all(|s| s.servers.is_empty()))
    })
    .await;
    let (response, took) = answer(now_host.clone()).await;
    assert_eq!((response.status, response.header("retry-after")), (503, Some("5")));
    assert!(took < Duration::from_millis(500), "teal.hold=0 answered after {took:?}");

    let (response, took) = answer(bound_host.clone()).await;
    assert_eq!((response.status, response.header("retry-after")), (503, Some("5")));
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&took),
        "teal.hold=1500ms answered after {took:?}"
    );
    eprintln!("503 with Retry-After: teal.hold=0 at once, teal.hold=1500ms after {took:?}");

    let report = teal.report().await.expect("/status");
    let held = |name: &str| report.services.iter().find(|s| s.name == name).and_then(|s| s.held);
    let bounded_held = held("bounded").expect("/status counts held requests of bounded");
    assert!(bounded_held.expired >= 1, "{bounded_held:?}");
    assert_eq!(held("off").map(|h| h.held), Some(0));
}
