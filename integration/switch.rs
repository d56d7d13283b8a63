//! `teal switch SERVICE` (blue/green) against the real daemon: the live
//! frontend serves one slot and `--preview-bind` the other; a switch flips
//! them under load on both listeners without a failed request, the choice
//! survives a teal restart, and a switch to a slot with nothing UP is
//! refused.

use std::net::SocketAddr;
use std::time::Duration;

use crate::docker::Docker;
use crate::http::{self, describe, Load};
use crate::rollout_cmd::{more_requests, run_cli, served_by, summary};
use crate::teal::Teal;
use crate::util::{free_addr, unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 4;

/// Waits until 10 requests in a row to the preview listener get `body`.
async fn preview_serves_only(preview: SocketAddr, body: &str) {
    wait_until(
        CONVERGE,
        &format!("the preview listener serves only {body}"),
        || async {
            for _ in 0..10 {
                if describe(&http::get(preview, "localhost", "/").await) != body {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// Switches under load on both listeners; asserts no request failed.
async fn switch_under_load(teal: &Teal, preview: SocketAddr, expect: &str) {
    let live_load = Load::start(teal.http, CLIENTS);
    let preview_load = Load::start(preview, CLIENTS);
    more_requests(&live_load, 100).await;
    let (ok, output) = run_cli(teal, &["switch", "web"]).await;
    assert!(ok, "switch failed:\n{output}");
    assert!(output.contains(expect), "expected {expect:?} in:\n{output}");
    assert!(output.contains("(switch web): completed in"), "{output}");
    served_by(&output, "new");
    more_requests(&live_load, 100).await;
    more_requests(&preview_load, 100).await;
    for (what, load) in [("live", live_load), ("preview", preview_load)] {
        let stats = load.stop().await;
        eprintln!("{}", summary(&format!("switch, {what} listener"), &stats));
        assert_eq!(stats.failures, 0, "{what}: failed requests: {:?}", stats.errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switch_and_switch_back_across_a_restart() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    // Outlives the first teal: the choice must survive the restart.
    let state = tempfile::tempdir().expect("state dir");
    let preview = free_addr();
    let start = || {
        Teal::builder(&prefix)
            .state_dir(state.path())
            .args(&["--preview-bind", &preview.to_string()])
            .start()
    };
    let mut teal = start().await;

    let blue = docker
        .container(&prefix, "blue")
        .service("web")
        .label("slot", "blue")
        .run()
        .await;
    teal.wait_served_by(&blue.body, CONVERGE).await;
    let (ok, output) = run_cli(&teal, &["switch", "web"]).await;
    assert!(!ok, "a switch to an empty slot went through:\n{output}");
    assert!(output.contains("no green server of web is UP"), "{output}");

    let green = docker
        .container(&prefix, "green")
        .service("web")
        .label("slot", "green")
        .run()
        .await;
    preview_serves_only(preview, &green.body).await;
    teal.wait_only(&[&blue.body], CONVERGE).await;

    switch_under_load(&teal, preview, "web: green is live").await;
    teal.wait_only(&[&green.body], CONVERGE).await;
    preview_serves_only(preview, &blue.body).await;

    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
    drop(teal);
    teal = start().await;
    teal.wait_only(&[&green.body], CONVERGE).await;
    preview_serves_only(preview, &blue.body).await;

    switch_under_load(&teal, preview, "web: blue is live").await;
    teal.wait_only(&[&blue.body], CONVERGE).await;
    preview_serves_only(preview, &green.body).await;
    let (ok, output) = run_cli(&teal, &["status", "--json"]).await;
    assert!(ok, "{output}");
    assert!(output.contains(r#""live_slot": "blue""#), "{output}");
    assert!(output.contains(r#""preview_of": "web""#), "{output}");
}
