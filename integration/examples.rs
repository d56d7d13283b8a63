//! The stacks in `examples/`, run as they are (with the locally built
//! images), and the sidecar image in both layouts: teal supervising HAProxy
//! in one container, and teal reloading a separate HAProxy container.
//! Load goes from the host to the 127.0.0.1 port the HAProxy container
//! publishes, and a rollout loses no request.

use std::net::SocketAddr;
use std::process::Command as StdCommand;
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::compose::{Compose, Version};
use crate::docker::Docker;
use crate::http::{self, describe, Load, LoadStats};
use crate::teal::parse_metrics;
use crate::util::{ensure_images, free_port, poll_for, repo_root, run, unique_prefix, wait_for, wait_until, Undo};

const CONVERGE: Duration = Duration::from_secs(60);
const CLIENTS: usize = 8;
const AFTER_STOP: Duration = Duration::from_secs(2);

/// Builds teal:local from the binary under test (and the example Redis)
/// once per test binary; quick when they are up to date.
pub fn ensure_example_images() {
    static ONCE: Once = Once::new();
    ensure_images();
    ONCE.call_once(|| {
        let out = StdCommand::new(repo_root().join("scripts/build-image.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_teal"), "all"])
            .output()
            .expect("run scripts/build-image.sh");
        assert!(
            out.status.success(),
            "scripts/build-image.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// What the test app answers: its hostname, the container id's first 12 digits.
pub fn body_of(container_id: &str) -> String {
    container_id.chars().take(12).collect()
}

pub async fn served(port: u16, path: &str) -> String {
    describe(&http::get(([127, 0, 0, 1], port).into(), "localhost", path).await)
}

/// The Redis-backed page: "visit N served by HOST" -> N.
pub async fn visits(port: u16) -> u64 {
    let page = served(port, "/cgi-bin/visits").await;
    page.strip_prefix("visit ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the visits page did not count: {page:?}"))
}

pub fn report(what: &str, stats: &LoadStats) {
    eprintln!(
        "{what}: {} requests, {} failed {:?}, served: {}",
        stats.requests,
        stats.failures,
        stats.errors,
        stats.served()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compose_example_rollout_loses_no_request() {
    // The README shows v2 first; compose_deploy runs both versions.
    if !Version::V2.usable() {
        return;
    }
    ensure_example_images();
    let prefix = unique_prefix();
    let port = free_port();
    let project = format!("{prefix}shop");
    let compose = Compose::new(
        Version::V2,
        &project,
        "examples/compose/docker-compose.yml",
        vec![("TEAL_HTTP_PORT", port.to_string())],
    );
    // Dropped first: its containers leave the project's network before `down`.
    let docker = Docker::shared();
    compose.run(&["up", "-d"]).await;
    let old = compose.ids("website").await;
    assert_eq!(old.len(), 1, "one website container: {old:?}");
    let old_body = body_of(&old[0]);
    let ok = poll_for(CONVERGE, || async {
        (served(port, "/").await == old_body).then_some(())
    })
    .await;
    if ok.is_none() {
        panic!(
            "website never served through the sidecar; teal:\n{}",
            compose.logs("teal").await
        );
    }

    // The app keeps its state in the project's Redis.
    let first = visits(port).await;
    assert_eq!(visits(port).await, first + 1);

    // teal in a compose container routes its own project only: a labelled
    // container on the same network, outside the project, is not routed.
    let intruder = docker
        .container(&prefix, "intruder")
        .args(&[
            "--network",
            &format!("{project}_default"),
            "--label",
            "teal.service=website",
        ])
        .run()
        .await;

    let load = Load::start(([127, 0, 0, 1], port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let started = Instant::now();
    compose
        .run(&["up", "-d", "--scale", "website=2", "--no-recreate"])
        .await;
    let new: Vec<String> = compose
        .ids("website")
        .await
        .into_iter()
        .filter(|id| !old.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one new website container: {new:?}");
    let new_body = body_of(&new[0]);
    let first_new = wait_for(CONVERGE, "the new replica is served under load", || async {
        load.first_seen(&new_body)
    })
    .await;
    run("docker", &["stop", "-t", "10", &old[0]], &[]).await;
    let old_stopped = Instant::now();
    // Load duration, not synchronisation: keep the clients going after the stop.
    tokio::time::sleep(AFTER_STOP).await;
    let stats = load.stop().await;
    eprintln!(
        "compose example: scale-to-first-routed {} ms",
        first_new.saturating_duration_since(started).as_millis()
    );
    report("compose example rollout", &stats);

    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert!(
        stats
            .seen
            .get(&old_body)
            .and_then(|s| s.last)
            .is_some_and(|t| t <= old_stopped),
        "the old container answered after docker stop returned"
    );
    assert!(
        !stats.seen.contains_key(&intruder.body),
        "a container outside the project was routed"
    );
    wait_until(CONVERGE, "only the new replica answers", || async {
        for _ in 0..10 {
            if served(port, "/").await != new_body {
                return false;
            }
        }
        true
    })
    .await;
    let stats = restart_under_load(port, &new[0], "compose example").await;
    assert_eq!(
        stats.failures,
        0,
        "failed requests: {:?}\n{}",
        stats.errors,
        compose.logs("teal").await
    );
}

/// The hold, in a layout: `docker restart` of a service's only replica
/// under load.
async fn restart_under_load(port: u16, container: &str, layout: &str) -> LoadStats {
    let load = Load::start(([127, 0, 0, 1], port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let restart = Instant::now();
    run("docker", &["restart", "-t", "10", container], &[]).await;
    let restarted = restart.elapsed();
    let after_restart = load.requests();
    wait_until(CONVERGE, "the restarted replica serves under load", || async {
        load.requests() > after_restart + 100
    })
    .await;
    let stats = load.stop().await;
    eprintln!("{layout}: docker restart took {restarted:?}");
    report(&format!("{layout}, docker restart of the only replica"), &stats);
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_layout_reloads_an_haproxy_container() {
    ensure_example_images();
    let prefix = unique_prefix();
    let undo = Undo::default();
    // Dropped first: its containers leave the network before it is removed.
    let docker = Docker::shared();
    let port = free_port();
    let (network, volume) = (format!("{prefix}-net"), format!("{prefix}-state"));
    let (lb, teal) = (format!("{prefix}-haproxy"), format!("{prefix}-teal"));
    run("docker", &["network", "create", &network], &[]).await;
    undo.push(&["docker", "network", "rm", &network], &[]);
    run("docker", &["volume", "create", &volume], &[]).await;
    undo.push(&["docker", "volume", "rm", &volume], &[]);
    undo.push(&["docker", "rm", "-f", "-v", &teal], &[]);
    undo.push(&["docker", "rm", "-f", "-v", &lb], &[]);

    let state = format!("{volume}:/var/lib/teal");
    let publish = format!("127.0.0.1:{port}:80");
    let status = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let publish_status = format!("{status}:9180");
    let reload = format!("container:{lb}");
    // teal first: it writes the config the HAProxy container starts from;
    // that one restarts until the file is there.
    #[rustfmt::skip]
    run("docker", &[
        "run", "-d", "--name", &teal, "--init", "--network", &network, "-p", &publish_status,
        "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", &state,
        "teal:local", "run", "--label-prefix", &prefix, "--reload", &reload,
    ], &[]).await;
    #[rustfmt::skip]
    run("docker", &[
        "run", "-d", "--name", &lb, "--network", &network, "-p", &publish, "-v", &state,
        "--restart", "on-failure", "--entrypoint", "/usr/sbin/haproxy",
        "teal:local", "-W", "-db", "-f", "/var/lib/teal/haproxy.cfg",
    ], &[]).await;

    let net = ["--network", network.as_str()];
    let a = docker.container(&prefix, "a").service("web").args(&net).run().await;
    let served_a = poll_for(CONVERGE, || async { (served(port, "/").await == a.body).then_some(()) }).await;
    if served_a.is_none() {
        let logs = run("docker", &["logs", "--tail", "60", &teal], &[]).await;
        let lb_logs = StdCommand::new("docker").args(["logs", "--tail", "30", &lb]).output();
        let lb_logs = lb_logs
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        panic!("a was never served; teal:\n{logs}\nhaproxy:\n{lb_logs}");
    }

    // A rollout: new servers come through a reload of the HAProxy container
    // (SIGUSR2 to it through the Docker API) or the runtime API.
    let load = Load::start(([127, 0, 0, 1], port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let b = docker.container(&prefix, "b").service("web").args(&net).run().await;
    wait_for(CONVERGE, "b is served under load", || async {
        load.first_seen(&b.body)
    })
    .await;
    docker.stop(&a).await;
    tokio::time::sleep(AFTER_STOP).await;
    let stats = load.stop().await;
    report("split layout rollout", &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    let restarts = run("docker", &["inspect", "-f", "{{.RestartCount}}", &lb], &[]).await;
    eprintln!("split layout: the HAProxy container restarted {restarts} times waiting for the first config");
    let metrics = http::get(status, "localhost", "/metrics")
        .await
        .expect("GET teal's /metrics");
    let reloads = parse_metrics(&metrics.body)
        .get("teal_reloads_total{result=\"ok\"}")
        .copied()
        .unwrap_or(0.0);
    // In this layout every applied config but a runtime change is a reload.
    assert!(
        reloads >= 1.0,
        "teal never reloaded the HAProxy container:\n{}",
        metrics.body
    );

    // The hold works here too: the HAProxy container binds the hold sockets
    // in the shared state dir.
    let stats = restart_under_load(port, &b.id, "split layout").await;
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
}
