//! The multi-node benchmark: a swarm of three nodes on this machine (each
//! a network namespace with its own dockerd, `integration/swarm_bed.rs`),
//! teal as a global service on the managers, the app service with a task on
//! every node, and a steady load from the hub to a manager's published port.
//!
//! ```text
//! cargo bench --bench swarm                           # every scenario, 40 s of load each
//! cargo bench --bench swarm -- update worker-kill --seconds 30
//! ```
//! Scenarios, on one manager and two workers: `update` (a start-first
//! rolling update of the three tasks), `worker-kill` (every process of a
//! worker with one task SIGKILLed), `worker-cut` (its link cut); on three
//! managers: `manager` (the leader killed, load through another manager's
//! teal). About 5 minutes for all four.

mod app;
// Shared with the tests and the other benchmarks, which use more of them.
#[path = "../http.rs"]
#[allow(dead_code)]
mod http;
#[allow(dead_code)]
mod load;
#[allow(dead_code)]
mod stack;
mod start;
#[path = "../swarm_bed.rs"]
#[allow(dead_code)]
mod swarm_bed;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use load::{load_runtime, percentile, Connections, Load, Sample};
use stack::sh;
use swarm_bed::{Hub, Loss, SwarmBed, HTTP_PORT};

const RATE: u32 = 500;
const WORKERS: u32 = 20;
const TEAL_IMAGE: &str = "teal:local";
/// HAProxy's checks take a dead server out in about 2 s; a bound for the wait.
const OUT_OF_ROTATION: Duration = Duration::from_secs(10);

fn main() {
    start::main(40, run);
}

async fn run(args: start::BenchArgs) {
    let seconds = Duration::from_secs(args.seconds);
    sh(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-image.sh"),
        &["--binary", env!("CARGO_BIN_EXE_teal"), "teal"],
    );
    if let Some(reason) = swarm_bed::unavailable() {
        eprintln!("swarm benchmark: {reason}");
        std::process::exit(1);
    }
    println!("teal multi-node benchmark: {RATE} req/s, {WORKERS} clients, new connection per request");
    println!("{}", Row::header());
    let images = [app::IMAGE, TEAL_IMAGE];
    if ["update", "worker-kill", "worker-cut"].iter().any(|s| args.wants(s)) {
        let bed = SwarmBed::up(&format!("bench{}", std::process::id()), 1, 2, &images).await;
        bed.deploy(app::IMAGE, 3, TEAL_IMAGE).await;
        let hub = bed.hub();
        bed.converged(&hub, "n1", 3, "").await;
        if args.wants("update") {
            println!("{}", update(&bed, &hub, seconds).await);
        }
        for (name, loss) in [("worker-kill", Loss::Kill), ("worker-cut", Loss::Cut)] {
            if args.wants(name) {
                println!("{}", lose_a_worker(&bed, &hub, loss, seconds).await);
            }
        }
    }
    if args.wants("manager") {
        let bed = SwarmBed::up(&format!("bench{}m", std::process::id()), 3, 0, &images).await;
        bed.deploy(app::IMAGE, 3, TEAL_IMAGE).await;
        let hub = bed.hub();
        for manager in ["n1", "n2", "n3"] {
            bed.converged(&hub, manager, 3, "").await;
        }
        println!("{}", lose_the_leader(&bed, &hub, seconds).await);
    }
}

/// The load's runtime, its threads in the hub's network namespace.
fn start_load(bed: &SwarmBed, manager: &str, duration: Duration) -> Load {
    let hub = PathBuf::from(bed.hub_netns());
    let runtime = load_runtime(move || swarm_bed::enter_netns(&hub));
    Load::start_on(
        runtime,
        bed.addr(manager, HTTP_PORT),
        "/",
        RATE,
        WORKERS,
        duration,
        Connections::Close,
    )
}

/// A quarter of the load in steady state, then `docker service update
/// --force` (start-first, one task at a time) across the three nodes.
async fn update(bed: &SwarmBed, hub: &Hub, duration: Duration) -> Row {
    let load = start_load(bed, "n1", duration);
    tokio::time::sleep(duration / 4).await;
    let (started, event) = (Instant::now(), load.started.elapsed());
    bed.update(&["--force"]).await;
    bed.converged(hub, "n1", 3, "").await;
    let took = started.elapsed();
    let (samples, errors) = load.finish().await;
    Row::new("update: rolling update of 3 tasks on 3 nodes", &samples, &errors, event).with("update took", took)
}

/// A worker with one task killed or cut a quarter into the load; then the
/// node back, so the next scenario finds three nodes again.
async fn lose_a_worker(bed: &SwarmBed, hub: &Hub, loss: Loss, duration: Duration) -> Row {
    let mut victim = bed.worker_with_one_task().await;
    while victim.is_none() {
        bed.update(&["--force"]).await;
        victim = bed.worker_with_one_task().await;
    }
    let (victim, lost) = victim.unwrap();
    let load = start_load(bed, "n1", duration);
    tokio::time::sleep(duration / 4).await;
    let event = load.started.elapsed();
    let (out, whole) = bed.lose_task(hub, "n1", (&victim, &lost), loss, OUT_OF_ROTATION).await;
    let (samples, errors) = load.finish().await;
    bed.restore(&victim, loss).await;
    bed.wait_ready(&victim).await;
    bed.update(&["--force"]).await;
    bed.converged(hub, "n1", 3, "").await;
    let name = match loss {
        Loss::Kill => "worker-kill: every process of a worker SIGKILLed",
        Loss::Cut => "worker-cut: a worker's link cut",
    };
    Row::new(name, &samples, &errors, event)
        .with("out of rotation", out)
        .with("teal's view whole", whole)
}

/// The leader of three managers killed a quarter into the load, sent to
/// another manager's teal.
async fn lose_the_leader(bed: &SwarmBed, hub: &Hub, duration: Duration) -> Row {
    let leader = bed.leader().await;
    let other = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap();
    let lost = bed.tasks(other).await.expect("tasks");
    let lost = lost
        .iter()
        .find(|t| t.node == leader)
        .expect("a task on the leader")
        .body
        .clone();
    let load = start_load(bed, other, duration);
    tokio::time::sleep(duration / 4).await;
    let (started, killed_at, event) = (Instant::now(), SystemTime::now(), load.started.elapsed());
    bed.lose(&leader, Loss::Kill).await;
    bed.out_of_rotation(hub, other, &lost, OUT_OF_ROTATION).await;
    let out = started.elapsed();
    let mut elected = None;
    let follows = loop {
        if elected.is_none() && bed.docker(other, &["node", "ls", "-q"]).await.is_ok() {
            elected = Some(started.elapsed());
        }
        let swarm = bed.status(hub, other).await.and_then(|s| s.docker.swarm);
        let listed = swarm
            .as_ref()
            .filter(|s| s.following)
            .and_then(|s| humantime::parse_rfc3339(s.listed_at.as_deref()?).ok());
        if listed.is_some_and(|at| at > killed_at) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "teal never followed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bed.converged(hub, other, 3, &leader).await;
    let whole = started.elapsed();
    let (samples, errors) = load.finish().await;
    let mut row = Row::new("manager: the leader of 3 managers killed", &samples, &errors, event)
        .with("out of rotation", out)
        .with("teal follows again", follows)
        .with("teal's view whole", whole);
    if let Some(elected) = elected {
        row = row.with("new leader", elected);
    }
    row
}

struct Row {
    name: String,
    requests: usize,
    failed: usize,
    /// Milliseconds: p50, p99 and max of every request, then the p99 of
    /// those sent before the update or the loss.
    latency: [f64; 4],
    errors: String,
    /// What was timed, and how long it took.
    times: Vec<(&'static str, Duration)>,
}

impl Row {
    /// `event`: when the update or the loss began, from the start of the load.
    fn new(name: &str, samples: &[Sample], errors: &std::collections::HashMap<String, u64>, event: Duration) -> Row {
        let all: Vec<&Sample> = samples.iter().collect();
        let steady: Vec<&Sample> = samples.iter().filter(|s| s.at < event).collect();
        let [p50, p99, max] = [50.0, 99.0, 100.0].map(|p| percentile(&all, p));
        Row {
            name: name.to_owned(),
            requests: samples.len(),
            failed: samples.iter().filter(|s| !s.ok).count(),
            latency: [p50, p99, max, percentile(&steady, 99.0)],
            errors: if errors.is_empty() {
                String::new()
            } else {
                format!(" {errors:?}")
            },
            times: Vec::new(),
        }
    }

    fn with(mut self, what: &'static str, took: Duration) -> Row {
        self.times.push((what, took));
        self
    }

    fn header() -> String {
        format!(
            "{:<50} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10}  timings",
            "scenario", "requests", "failed", "p50 ms", "p99 ms", "max ms", "steady p99"
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let times: Vec<String> = self
            .times
            .iter()
            .map(|(what, took)| format!("{what} {:.1} s", took.as_secs_f64()))
            .collect();
        let [p50, p99, max, steady] = self.latency;
        write!(
            f,
            "{:<50} {:>8} {:>7} {p50:>8.1} {p99:>8.1} {max:>8.1} {steady:>10.1}  {}{}",
            self.name,
            self.requests,
            self.failed,
            times.join(", "),
            self.errors
        )
    }
}
