//! Draining until idle, against the real daemon and HAProxy, with the
//! compiled app streaming its responses. `teal drain CONTAINER` returns 0
//! once the request in flight has finished (and not before), exits
//! non-zero when one outlasts `--timeout` (which still completes whole),
//! and the drain survives a restart of teal until `--undo`. `teal rollout`
//! under a load of streamed responses delivers every one whole.

use std::time::{Duration, Instant};

use crate::app_image::{self, whole};
use crate::http::{self, Load};
use crate::rollout_cmd::{more_requests, run_cli, run_under_load, short, Deploy};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

/// The container's server as `/status` reports it, once it exists.
async fn server(teal: &Teal, id: &str) -> Option<teal::status::ServerStatus> {
    let report = teal.report().await.ok()?;
    report
        .services
        .into_iter()
        .flat_map(|s| s.servers)
        .find(|s| s.container_id == id)
}

/// Sends `GET /stream?ms=MS` in the background, once HAProxy counts it in
/// flight on `id`; it yields the response and when it ended.
async fn stream_on(
    teal: &Teal,
    id: &str,
    ms: u64,
) -> tokio::task::JoinHandle<(std::io::Result<http::Response>, Instant)> {
    let addr = teal.http;
    let request = tokio::spawn(async move {
        let response = http::get(addr, "localhost", &format!("/stream?ms={ms}")).await;
        (response, Instant::now())
    });
    wait_until(CONVERGE, "HAProxy counts the stream in flight", || async {
        server(teal, id).await.and_then(|s| s.in_flight) == Some(1)
    })
    .await;
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_returns_once_idle_and_fails_past_its_timeout() {
    let prefix = unique_prefix();
    let deploy = Deploy::new(&prefix);
    let app = app_image::image();
    let state = tempfile::tempdir().expect("state dir");
    let start = || Teal::builder(&prefix).state_dir(state.path()).start();
    let mut teal = start().await;
    let a = deploy.run("a", app, &[]).await;
    teal.wait_served_by(short(&a), CONVERGE).await;

    // A slow response in flight: drain waits for it, and no longer.
    let slow = stream_on(&teal, &a, 2000).await;
    let started = Instant::now();
    let (ok, output) = run_cli(&teal, &["drain", &format!("{prefix}-a"), "--timeout", "10s"]).await;
    let returned = Instant::now();
    assert!(ok, "drain failed:\n{output}");
    assert!(output.contains("out of rotation and idle after"), "{output}");
    let (response, ended) = slow.await.expect("the slow request");
    let response = response.expect("the slow response");
    assert!(whole(&response), "cut short: {:?}", response.body);
    assert!(
        ended <= returned,
        "drain returned before the request in flight had ended"
    );
    eprintln!(
        "drain: returned {} ms after it started, {} ms after the stream ended",
        (returned - started).as_millis(),
        (returned - ended).as_millis()
    );
    let drained = server(&teal, &a).await.expect("a is still a server");
    assert!(drained.drained, "{drained:?}");
    assert_eq!(drained.haproxy, Some(teal::status::HaproxyState::Drain));

    // Only b is in rotation; its response outlasts the drain's timeout.
    let b = deploy.run("b", app, &[]).await;
    teal.wait_only(&[short(&b)], CONVERGE).await;
    let long = stream_on(&teal, &b, 3000).await;
    let (ok, output) = run_cli(&teal, &["drain", &format!("{prefix}-b"), "--timeout", "1s"]).await;
    assert!(!ok, "drain returned 0 with a request in flight:\n{output}");
    assert!(output.contains("still has 1 request in flight after 1s"), "{output}");
    let (response, _) = long.await.expect("the long request");
    let response = response.expect("the long response");
    assert!(whole(&response), "cut short: {:?}", response.body);

    // Both stay drained across a restart of teal, until --undo.
    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
    drop(teal);
    teal = start().await;
    for id in [&a, &b] {
        let drained = wait_for(CONVERGE, "the restarted teal routes the container", || {
            server(&teal, id)
        })
        .await;
        assert!(drained.drained, "{drained:?}");
        assert_eq!(drained.haproxy, Some(teal::status::HaproxyState::Drain));
    }
    teal.wait_unserved(CONVERGE).await;
    let (ok, output) = run_cli(&teal, &["status"]).await;
    assert!(ok && output.contains("drained by teal drain"), "{output}");
    let (ok, output) = run_cli(&teal, &["drain", &format!("{prefix}-a"), "--undo"]).await;
    assert!(ok && output.contains("back in rotation"), "{output}");
    teal.wait_only(&[short(&a)], CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_delivers_every_streamed_response_whole() {
    let prefix = unique_prefix();
    let deploy = Deploy::new(&prefix);
    let app = app_image::image();
    let teal = Teal::builder(&prefix).start().await;
    // Under --init the app dies at once on SIGTERM: a stop with a
    // response under way would cut it.
    let old = deploy.run("a", app, &[]).await;
    teal.wait_served_by(short(&old), CONVERGE).await;
    let load = Load::start_on(teal.http, 6, "/stream?ms=1000", whole);
    more_requests(&load, 6).await;

    // Failed includes truncated: a 200 whose body was cut short.
    let (output, stats) = run_under_load(&teal, load, &["rollout", "web", "--drain", "5s"], 12).await;
    assert!(output.contains("idle after"), "{output}");
    let new = deploy.running().await;
    assert_eq!(new.len(), 1);
    assert!(new[0] != old, "the old container still runs");
    for id in [&old, &new[0]] {
        assert!(stats.seen.contains_key(short(id)), "{} served nothing", short(id));
    }
}
