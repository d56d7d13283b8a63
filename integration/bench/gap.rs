//! Deploys that leave a one-replica service without a server for a moment,
//! behind teal with its default hold (15 s): compose's `up -d` recreating
//! the service after its config changed (v2 and v1: stop the old
//! container, then create and start the new one) and `docker restart`.
//! Requests that arrive in the gap wait for the new container, so the gap
//! shows as latency (p99, max), not as failed requests.
//!
//! The app exits at once on SIGTERM (`init`), as most apps do, and has a
//! Docker healthcheck, which teal waits for before it routes a container
//! (see docs/operations.md on holding).

use std::time::Duration;

use crate::compose_file::one_service;
use crate::load::{Connections, Load};
use crate::stack::{sh, wait_until, ComposeProject, Teal};
use crate::{app, finish, gets, steady, unique, Row, Steady, RATE, WORKERS};

/// `docker run` options with the compose file's healthcheck and init.
const HEALTHY_INIT: &[&str] = &[
    "--init",
    "--health-cmd",
    "wget -q -O /dev/null http://127.0.0.1:8080/",
    "--health-interval",
    "250ms",
    "--health-start-period",
    "30s",
];

/// How long a scenario waits for a container to be served.
const SERVED: Duration = Duration::from_secs(30);

/// `up -d` of one replica, then `up -d` again after its config changed.
pub async fn recreate(name: &str, command: &'static [&'static str], duration: Duration) -> Option<Row> {
    if !ComposeProject::installed(command) {
        eprintln!(
            "  {name}: skipped, `{} version` fails (scripts/test.sh installs Compose v2)",
            command.join(" ")
        );
        return None;
    }
    let prefix = unique(name);
    let teal = Teal::start(&prefix).await;
    let dir = std::env::temp_dir().join(format!("{prefix}-compose"));
    std::fs::create_dir_all(&dir).expect("compose dir");
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, one_service(app::IMAGE, &prefix, "web", "1")).expect("compose file");
    let compose = ComposeProject::new(command, &file, &prefix);
    compose.run(&["up", "-d"]);
    wait_until(SERVED, "the first container is UP", async || {
        teal.servers_up().await == 1
    })
    .await;

    let load = Load::start(teal.http, RATE, WORKERS, duration, Connections::Close);
    tokio::time::sleep(duration / 4).await;
    let reloads_before = teal.reloads().await;
    let rollout_start = load.started.elapsed();
    std::fs::write(&file, one_service(app::IMAGE, &prefix, "web", "2")).expect("compose file");
    compose.run(&["up", "-d"]);
    let new = compose.run(&["ps", "-q", "web"]);
    let new = new.get(..12).unwrap_or_default().to_owned();
    wait_until(SERVED, "the recreated container is served", async || {
        load.first_seen(&new).is_some()
    })
    .await;
    let reloads_before = Some(reloads_before);
    let row = finish(name, &teal, load, rollout_start, reloads_before, None, None).await;
    drop(compose);
    let _ = std::fs::remove_dir_all(&dir);
    Some(row)
}

/// `docker restart` of the one container of the service.
pub async fn restart(duration: Duration) -> Row {
    let name = "restart";
    let Steady {
        proxy: teal,
        containers: _containers,
        old,
        load,
        reloads_before,
        rollout_start,
    } = steady::<Teal>(name, gets(Connections::Close), HEALTHY_INIT, duration).await;
    sh("docker", &["restart", &old]);
    wait_until(SERVED, "the restarted container is UP", async || {
        teal.servers_up().await == 1
    })
    .await;
    finish(name, &teal, load, rollout_start, reloads_before, None, None).await
}
