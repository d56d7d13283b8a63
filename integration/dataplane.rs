//! The data plane outlives teal (`--reload supervise`): a SIGKILLed teal
//! leaves HAProxy serving and the next teal adopts it; a killed HAProxy is
//! restarted and counted; a first start that fails (port taken) is retried
//! without a Docker event; sockets, state dir and config are private
//! whatever the umask; `/healthz` ignores Docker, `/readyz` follows it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use teal::status::{HaproxyProcess, StatusReport};

use crate::docker::Docker;
use crate::dockerd::PrivateDockerd;
use crate::http::{self, Load};
use crate::teal::Teal;
use crate::util::{
    alive, free_addr, free_port, pids_mentioning, repo_root, signal, terminate, unique_prefix, wait_for, wait_until,
};

const CONVERGE: Duration = Duration::from_secs(30);
/// How long teal stays dead in the kill test.
const TEAL_DOWN: Duration = Duration::from_secs(5);

/// Stops whatever still names this state dir when the test ends: the HAProxy
/// a killed teal left, if the test fails before a new teal stops it.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        terminate(&pids_mentioning(&self.0.to_string_lossy()), Duration::from_secs(2));
    }
}

/// HAProxy masters whose command line names `state_dir`: the haproxy
/// processes of that set whose parent is not in it (workers are the
/// master's children; teal's own command line names it too).
fn masters_of(state_dir: &Path) -> Vec<i32> {
    let is_haproxy =
        |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "haproxy");
    let pids: Vec<i32> = pids_mentioning(&state_dir.to_string_lossy())
        .into_iter()
        .filter(|&p| alive(p) && is_haproxy(p))
        .collect();
    let parent = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
    };
    pids.iter()
        .copied()
        .filter(|&p| parent(p).is_none_or(|pp| !pids.contains(&pp)))
        .collect()
}

async fn report(teal: &Teal) -> Option<StatusReport> {
    teal.report().await.ok()
}

async fn haproxy(teal: &Teal) -> Option<HaproxyProcess> {
    report(teal).await?.haproxy
}

/// One sample of /metrics, by its exact name with labels.
async fn metric(teal: &Teal, name: &str) -> Option<f64> {
    let text = http::get(teal.status, "localhost", "/metrics").await.ok()?.body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn endpoint(teal: &Teal, path: &str) -> u16 {
    http::get(teal.status, "localhost", path)
        .await
        .map(|r| r.status)
        .unwrap_or_default()
}

fn pidfile(state_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(state_dir.join("haproxy.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_teal_leaves_haproxy_serving_and_the_next_teal_adopts_it() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let state = tempfile::tempdir().expect("state dir");
    let _leftovers = Leftovers(state.path().to_owned());
    let config = state.path().join("haproxy.cfg");
    let http = free_addr();
    let kept = docker.container(&prefix, "kept").service("web").run().await;
    let leaving = docker.container(&prefix, "leaving").service("web").run().await;
    let builder = || {
        Teal::builder(&prefix)
            .state_dir(state.path())
            .config(&config)
            .http(http)
    };
    let mut first = builder().start().await;
    first.wait_served_by(&kept.body, CONVERGE).await;
    first.wait_served_by(&leaving.body, CONVERGE).await;
    let master = wait_for(CONVERGE, "/status names the running master", || async {
        haproxy(&first).await.filter(|h| h.running).and_then(|h| h.pid)
    })
    .await;
    assert_eq!(pidfile(state.path()), Some(master), "the pidfile names the master");

    let load = Load::start(http, 4);
    wait_until(CONVERGE, "the load is running", || async { load.requests() > 200 }).await;
    let before = (load.requests(), load.failures());
    let killed_at = Instant::now();
    first.kill();
    // While teal is down: one container arrives, one leaves.
    let arrived = docker.container(&prefix, "arrived").service("web").run().await;
    docker.stop(&leaving).await;
    tokio::time::sleep(TEAL_DOWN.saturating_sub(killed_at.elapsed())).await;
    let down = (load.requests() - before.0, load.failures() - before.1);
    eprintln!(
        "teal down {:?}: {} requests, {} failed",
        killed_at.elapsed(),
        down.0,
        down.1
    );
    assert!(alive(master as i32), "haproxy outlived teal");
    assert_eq!(masters_of(state.path()), vec![master as i32]);

    let mut second = builder().start().await;
    let adopted = wait_for(CONVERGE, "the new teal adopted the master", || async {
        haproxy(&second).await.filter(|h| h.adopted && h.running)
    })
    .await;
    assert_eq!(adopted.pid, Some(master), "the same master, not a new one");
    wait_until(
        CONVERGE,
        "the container started while teal was down is routed",
        || async { load.first_seen(&arrived.body).is_some() },
    )
    .await;
    wait_until(
        CONVERGE,
        "the container stopped while teal was down has left",
        || async {
            report(&second).await.is_some_and(|r| {
                let servers: Vec<&str> = r
                    .services
                    .iter()
                    .flat_map(|s| &s.servers)
                    .map(|s| s.container_name.as_str())
                    .collect();
                servers.contains(&arrived.name.as_str()) && !servers.contains(&leaving.name.as_str())
            })
        },
    )
    .await;
    second.wait_only(&[&kept.body, &arrived.body], CONVERGE).await;
    let requests_at_converge = load.requests();
    wait_until(CONVERGE, "more load after converging", || async {
        load.requests() > requests_at_converge + 200
    })
    .await;
    assert_eq!(masters_of(state.path()), vec![master as i32], "exactly one master");
    let stats = load.stop().await;
    eprintln!(
        "kill -9 of teal, restart, adoption: {} requests, {} failed ({:?}); served: {}",
        stats.requests,
        stats.failures,
        stats.errors,
        stats.served()
    );
    assert_eq!(down.1, 0, "no request failed while teal was down");
    assert_eq!(stats.failures, 0, "{:?}", stats.errors);

    // The adopted master is not teal's child: its death is seen by its pid.
    let killed_at = Instant::now();
    signal(master as i32, Signal::SIGKILL);
    let restarted = wait_for(CONVERGE, "teal restarts the adopted master it saw die", || async {
        haproxy(&second)
            .await
            .filter(|h| h.running && h.pid.is_some_and(|p| p != master))
    })
    .await;
    second.wait_served_by(&kept.body, CONVERGE).await;
    eprintln!(
        "adopted master SIGKILLed: serving again after {:?}; {:?}",
        killed_at.elapsed(),
        restarted.last_exit
    );
    assert!(!restarted.adopted && restarted.restarts == 1);
    let reason = restarted.last_exit.map(|e| e.reason).unwrap_or_default();
    assert!(reason.contains("not teal's child"), "{reason}");
    assert_eq!(masters_of(state.path()).len(), 1, "exactly one master");

    let stopped = second.stop();
    assert!(
        stopped.orphans.is_empty(),
        "a clean stop stops the adopted haproxy: {:?}",
        stopped.orphans
    );
    assert!(masters_of(state.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_haproxy_is_restarted_and_counted() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let a = docker.container(&prefix, "a").service("web").run().await;
    let mut teal = Teal::builder(&prefix).start().await;
    teal.wait_served_by(&a.body, CONVERGE).await;
    let old = wait_for(CONVERGE, "/status names the master", || async {
        haproxy(&teal).await.filter(|h| h.running).and_then(|h| h.pid)
    })
    .await;

    let killed_at = Instant::now();
    signal(old as i32, Signal::SIGKILL);
    let restarted = wait_for(CONVERGE, "a new master runs", || async {
        haproxy(&teal)
            .await
            .filter(|h| h.running && h.pid.is_some_and(|p| p != old))
    })
    .await;
    teal.wait_served_by(&a.body, CONVERGE).await;
    eprintln!(
        "haproxy SIGKILLed: serving again after {:?}; exits {}, restarts {}, last exit {:?}",
        killed_at.elapsed(),
        restarted.exits,
        restarted.restarts,
        restarted.last_exit
    );
    assert!(!restarted.adopted);
    assert_eq!(restarted.restarts, 1);
    assert!(restarted.exits >= 1);
    let reason = restarted.last_exit.map(|e| e.reason).unwrap_or_default();
    assert!(reason.contains("SIGKILL"), "{reason}");
    assert_eq!(metric(&teal, "teal_haproxy_restarts_total").await, Some(1.0));
    assert_eq!(
        metric(&teal, "teal_haproxy_exits_total").await,
        Some(restarted.exits as f64)
    );
    assert_eq!(metric(&teal, "teal_haproxy_running").await, Some(1.0));
    wait_until(CONVERGE, "/healthz is OK again", || async {
        endpoint(&teal, "/healthz").await == 200
    })
    .await;
    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_on_a_taken_port_is_retried_until_it_serves() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let a = docker.container(&prefix, "a").service("web").run().await;
    // Held without SO_REUSEPORT, so HAProxy cannot bind beside it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = holder.local_addr().expect("local_addr");
    let spawned = Instant::now();
    let mut teal = Teal::builder(&prefix).http(http).spawn();

    let failed = wait_for(CONVERGE, "/status shows failed starts", || async {
        haproxy(&teal).await.filter(|h| !h.running && h.exits >= 2)
    })
    .await;
    // Each exit at start is seen at once (it used to cost a 10 s wait).
    let two_failures = spawned.elapsed();
    assert!(two_failures < Duration::from_secs(8), "{two_failures:?}");
    assert_eq!(endpoint(&teal, "/healthz").await, 503, "not live while nothing serves");
    assert_eq!(endpoint(&teal, "/readyz").await, 503);
    let log = teal.log();
    assert!(!log.contains("keeps serving"), "no line claims a config serves:\n{log}");

    drop(holder);
    let freed = Instant::now();
    // No Docker event from here on: the supervisor retries by itself.
    teal.wait_served_by(&a.body, CONVERGE).await;
    // HAProxy answers a moment before the supervisor sees its master socket.
    let serving = wait_for(CONVERGE, "/status shows it running", || async {
        haproxy(&teal).await.filter(|h| h.running)
    })
    .await;
    eprintln!(
        "port taken: {} failed starts within {two_failures:?} of teal's start; served {:?} after the port was \
         freed; exits {}, restarts {}",
        failed.exits,
        freed.elapsed(),
        serving.exits,
        serving.restarts
    );
    assert_eq!(serving.restarts, 1);
    wait_until(CONVERGE, "/healthz and /readyz are OK", || async {
        endpoint(&teal, "/healthz").await == 200 && endpoint(&teal, "/readyz").await == 200
    })
    .await;
    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_state_dir_and_config_are_private_at_umask_000() {
    let prefix = unique_prefix();
    let teal = Teal::builder(&prefix).umask("000").start().await;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let state = &teal.state_dir;
    let modes = [
        ("state dir", mode(state)),
        ("master.sock", mode(&state.join("master.sock"))),
        ("haproxy.sock", mode(&state.join("haproxy.sock"))),
        ("server-state", mode(&state.join("server-state"))),
        ("haproxy.cfg", mode(&teal.config)),
    ];
    let described: Vec<String> = modes.iter().map(|(what, m)| format!("{what} {m:o}")).collect();
    eprintln!("umask 000: {}", described.join(", "));
    assert_eq!(
        modes.map(|(_, m)| m),
        [0o700, 0o600, 0o600, 0o644, 0o644],
        "{described:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_container_on_teals_own_port_is_left_out() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;
    let status_port = teal.status.port().to_string();
    let c = docker
        .container(&prefix, "hostnet")
        .service("web")
        .args(&["--network", "host", "-e", &format!("PORT=127.0.0.1:{}", free_port())])
        .label("port", &status_port)
        .run()
        .await;
    let reason = wait_for(CONVERGE, "/status leaves the container out", || async {
        let report = report(&teal).await?;
        report
            .excluded
            .into_iter()
            .find(|e| e.container_name == c.name)
            .map(|e| e.reason)
    })
    .await;
    eprintln!("host network on the status port: {reason}");
    assert!(reason.contains("teal's own listeners"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_ignores_docker_and_readiness_follows_it() {
    let prefix = unique_prefix();
    let mut dockerd = PrivateDockerd::start(&prefix).await;
    let docker = Docker::at(Some(dockerd.host.clone()));
    let teal = Teal::builder(&prefix).docker_host(&dockerd.host).start().await;
    let c = docker
        .container(&prefix, "c")
        .service("web")
        .host_network(free_port())
        .run()
        .await;
    teal.wait_served_by(&c.body, CONVERGE).await;
    wait_until(CONVERGE, "live and ready", || async {
        endpoint(&teal, "/healthz").await == 200 && endpoint(&teal, "/readyz").await == 200
    })
    .await;

    dockerd.stop();
    wait_until(CONVERGE, "/readyz reports Docker down", || async {
        endpoint(&teal, "/readyz").await == 503
    })
    .await;
    let mut probes = 0;
    for _ in 0..20 {
        assert_eq!(endpoint(&teal, "/healthz").await, 200, "live while Docker is down");
        assert_eq!(teal.served().await, c.body, "serving while Docker is down");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dockerd.restart().await;
    wait_until(CONVERGE, "/readyz is OK again", || async {
        endpoint(&teal, "/readyz").await == 200
    })
    .await;
    eprintln!("docker down: /healthz 200 and the service served on {probes} of {probes} probes; /readyz 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_config_haproxy_rejects_claims_nothing_serves() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let _a = docker.container(&prefix, "a").service("web").run().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("haproxy.cfg.hbs");
    let default = std::fs::read_to_string(repo_root().join("haproxy/haproxy.cfg.hbs")).expect("default template");
    let rejected = default.replacen("defaults\n", "defaults\n    no-such-keyword-teal\n", 1);
    std::fs::write(&template, rejected).expect("write template");
    let teal = Teal::builder(&prefix).template(&template).spawn();

    let error = wait_for(CONVERGE, "/status shows the rejected first config", || async {
        report(&teal).await?.last_reload.filter(|r| !r.ok)?.error
    })
    .await;
    eprintln!("first config rejected: {error}");
    assert!(error.contains("no-such-keyword-teal"), "{error}");
    assert_eq!(endpoint(&teal, "/healthz").await, 503, "nothing serves");
    assert!(haproxy(&teal).await.is_some_and(|h| !h.running && h.exits == 0));
    let log = teal.log();
    assert!(!log.contains("keeps serving"), "no line claims a config serves:\n{log}");
}
