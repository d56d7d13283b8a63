//! Deploys a compose user runs, with each compose version (v2 `docker
//! compose`, v1 `docker-compose`), under load: scale to two then stop the
//! old replica (by the name compose gave it), and the plain `up -d` that
//! recreates a one-replica service whose config changed, which teal holds
//! requests through.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::compose::{Compose, Version};
use crate::compose_file::one_service;
use crate::examples::{body_of, report};
use crate::hold::{assert_gap_held, released};
use crate::http::Load;
use crate::teal::Teal;
use crate::util::{ensure_images, run, unique_prefix, wait_for, wait_until, IMAGE};

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 8;
/// Load duration after the change, not synchronisation.
const AFTER: Duration = Duration::from_secs(1);

/// A compose project of one service, `website`, routed by the test's teal.
struct Project {
    compose: Compose,
    file: PathBuf,
    prefix: String,
    _dir: TempDir,
}

impl Project {
    fn new(version: Version, prefix: &str) -> Project {
        ensure_images();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("docker-compose.yml");
        let project = Project {
            compose: Compose::new(version, prefix, &file.to_string_lossy(), Vec::new()),
            file,
            prefix: prefix.to_owned(),
            _dir: dir,
        };
        project.write("1");
        project
    }

    /// Writes the compose file with `DEPLOY` set to `deploy`: a new value is
    /// a changed config.
    fn write(&self, deploy: &str) {
        let file = one_service(IMAGE, &self.prefix, "website", deploy);
        std::fs::write(&self.file, file).expect("write the compose file");
    }

    /// `up -d`, then the one container's answer once teal serves it.
    async fn up(&self, teal: &Teal) -> String {
        self.compose.run(&["up", "-d"]).await;
        let ids = self.compose.ids("website").await;
        assert_eq!(ids.len(), 1, "one website container: {ids:?}");
        let body = body_of(&ids[0]);
        teal.wait_served_by(&body, CONVERGE).await;
        body
    }
}

/// Start a second replica with `scale_up`, wait until it is served, then
/// `docker stop` the first by its compose name (`PROJECT-website-1` in v2,
/// `PROJECT_website_1` in v1): teal drains it on the stop.
async fn scale_up_then_stop_the_first(version: Version, scale_up: &[&str]) {
    if !version.usable() {
        return;
    }
    let prefix = unique_prefix();
    let teal = Teal::builder(&prefix).start().await;
    let project = Project::new(version, &prefix);
    let old = project.up(&teal).await;

    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    project.compose.run(scale_up).await;
    let ids = project.compose.ids("website").await;
    let new: Vec<String> = ids.iter().map(|id| body_of(id)).filter(|body| *body != old).collect();
    assert_eq!(new.len(), 1, "one new website container: {ids:?}");
    wait_for(CONVERGE, "the new replica is served under load", || async {
        load.first_seen(&new[0])
    })
    .await;
    let first = project.compose.container_name("website", 1);
    run("docker", &["stop", "-t", "10", &first], &[]).await;
    let stopped = Instant::now();
    tokio::time::sleep(AFTER).await;
    let stats = load.stop().await;
    report(
        &format!("{version:?} {} then docker stop {first}", scale_up.join(" ")),
        &stats,
    );

    assert_eq!(stats.failures, 0, "failed requests: {:?}\n{}", stats.errors, teal.log());
    assert!(
        stats.seen.get(&old).and_then(|s| s.last).is_some_and(|t| t <= stopped),
        "{first} answered after docker stop returned"
    );
}

/// `up -d` after the service's config changed, one replica: compose stops
/// the old container, then creates and starts the new one (v2 removes the
/// old one before it starts the new). Every request in that gap waits for
/// the new one (`--hold`).
async fn up_recreate_holds_every_request(version: Version) {
    if !version.usable() {
        return;
    }
    let prefix = unique_prefix();
    let teal = Teal::builder(&prefix).args(&["--hold", "15s"]).start().await;
    let project = Project::new(version, &prefix);
    let old = project.up(&teal).await;

    let load = Load::start(teal.http, CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    project.write("2");
    project.compose.run(&["up", "-d", "-t", "10"]).await;
    let ids = project.compose.ids("website").await;
    assert_eq!(ids.len(), 1, "one website container after up -d: {ids:?}");
    let new = body_of(&ids[0]);
    assert_ne!(new, old, "compose recreated the container");
    wait_for(CONVERGE, "the recreated replica serves under load", || async {
        load.first_seen(&new)
    })
    .await;
    tokio::time::sleep(AFTER).await;
    let stats = load.stop().await;
    let held = released(&teal, "website").await;
    report(&format!("{version:?} up -d recreate ({held} held)"), &stats);

    assert_gap_held(&stats, held, &teal);
}

const UP_SCALE: &[&str] = &["up", "-d", "--scale", "website=2", "--no-recreate"];
const SCALE: &[&str] = &["scale", "website=2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_up_scale_no_recreate_then_stop_loses_no_request() {
    scale_up_then_stop_the_first(Version::V2, UP_SCALE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_up_scale_no_recreate_then_stop_loses_no_request() {
    scale_up_then_stop_the_first(Version::V1, UP_SCALE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_scale_then_stop_by_name_loses_no_request() {
    scale_up_then_stop_the_first(Version::V2, SCALE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_scale_then_stop_by_name_loses_no_request() {
    scale_up_then_stop_the_first(Version::V1, SCALE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_up_recreate_of_one_replica_loses_no_request() {
    up_recreate_holds_every_request(Version::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_up_recreate_of_one_replica_loses_no_request() {
    up_recreate_holds_every_request(Version::V1).await;
}
