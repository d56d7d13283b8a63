//! The zero-downtime benchmark: real traffic through HAProxy while teal
//! follows a rollout, against the real dockerd. Prints one row per scenario.
//!
//! ```text
//! cargo bench --bench rollout                      # every scenario, 60 s of load each
//! cargo bench --bench rollout -- cc ka --seconds 20
//! ```
//! Scenarios: cc, ka, sigterm, slow-health, never-healthy, control,
//! control-sigterm, naive, recreate-v2, recreate-v1, restart,
//! stream-rollout, stream-stop, burst, event-to-routable. Not part of the
//! test run: it takes about 20 minutes.

mod app;
#[path = "../compose_file.rs"]
mod compose_file;
mod gap;
// Shared with the fault benchmark, which uses more of them.
#[allow(dead_code)]
mod load;
mod routable;
#[allow(dead_code)]
mod stack;
mod start;
mod stream;

use std::time::{Duration, Instant};

use load::{load_runtime, percentile, Connections, Load, Sample};
use stack::{wait_until, ComposeProject, Containers, StaticHaproxy, Teal};

/// Requests per second sent in every rollout scenario.
const RATE: u32 = 1000;
const WORKERS: u32 = 20;

fn main() {
    start::main(60, run);
}

async fn run(args: start::BenchArgs) {
    let seconds = args.seconds;
    let duration = Duration::from_secs(seconds);

    println!("teal rollout benchmark: {RATE} req/s for {seconds} s per scenario, {WORKERS} clients");
    println!("{}", Row::header());
    let plain: &[&str] = &[];
    let exits_at_once: &[&str] = &["--init"];
    let slow_health = New {
        options: &["--health-cmd", "test -f /tmp/ready", "--health-interval", "1s"],
        command: &["/bin/sh", "-c", SLOW_HEALTH_CMD],
        expect: Expect::Healthy,
    };
    let never_healthy = New {
        options: &[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        command: &[],
        expect: Expect::NeverHealthy,
    };
    let same = |options| New {
        options,
        command: &[],
        expect: Expect::Healthy,
    };
    let rollouts = [
        ("cc", Connections::Close, plain, same(plain)),
        ("ka", Connections::KeepAlive, plain, same(plain)),
        ("sigterm", Connections::Close, exits_at_once, same(exits_at_once)),
        ("slow-health", Connections::Close, plain, slow_health),
        ("never-healthy", Connections::Close, plain, never_healthy),
    ];
    for (name, connections, old, new) in rollouts {
        if args.wants(name) {
            let row = rollout(name, connections, old, new, duration).await;
            println!("{row}");
        }
    }
    for (name, options) in [("control", plain), ("control-sigterm", exits_at_once)] {
        if args.wants(name) {
            println!("{}", control(name, options, duration).await);
        }
    }
    if args.wants("naive") {
        println!("{}", naive(duration).await);
    }
    let compose_v2: &[&str] = &["docker", "compose"];
    for (name, command) in [("recreate-v2", compose_v2), ("recreate-v1", &["docker-compose"])] {
        if args.wants(name) {
            if let Some(row) = gap::recreate(name, command, duration).await {
                println!("{row}");
            }
        }
    }
    if args.wants("restart") {
        println!("{}", gap::restart(duration).await);
    }
    for how in [stream::How::Rollout, stream::How::Stop] {
        if args.wants(how.name()) {
            println!("{}", stream::scenario(how, duration).await);
        }
    }
    if args.wants("burst") {
        burst().await;
    }
    if args.wants("event-to-routable") {
        routable::run(&unique("e2r")).await;
    }
}

/// The replacement container of a rollout scenario.
struct New {
    options: &'static [&'static str],
    command: &'static [&'static str],
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Healthy,
    /// The new version must never get traffic; the old keeps serving.
    NeverHealthy,
}

/// The command a slow-to-health container runs: it serves at once, but its
/// healthcheck passes only after 10 s.
const SLOW_HEALTH_CMD: &str = "(sleep 10; touch /tmp/ready) & exec /app serve";

fn unique(name: &str) -> String {
    format!("bench{}{}", std::process::id(), name.replace('-', ""))
}

/// A scenario after its steady phase: one container of service `web`
/// served under load for a quarter of the run.
struct Steady {
    teal: Teal,
    containers: Containers,
    /// The container's id, which is also its answer.
    old: String,
    load: Load,
    reloads_before: u64,
    /// When the steady phase ended, from the start of the load.
    rollout_start: Duration,
}

/// What the clients send: GET `path`, `rate` a second in all, from `workers` clients.
#[derive(Clone, Copy)]
struct Traffic {
    path: &'static str,
    rate: u32,
    workers: u32,
    connections: Connections,
}

/// The rollout scenarios' traffic: GET `/` at [`RATE`] from [`WORKERS`].
fn gets(connections: Connections) -> Traffic {
    Traffic {
        path: "/",
        rate: RATE,
        workers: WORKERS,
        connections,
    }
}

async fn steady(name: &str, traffic: Traffic, options: &[&str], duration: Duration) -> Steady {
    let prefix = unique(name);
    let teal = Teal::start(&prefix).await;
    let mut containers = Containers::new(&prefix);
    let old = containers.run("web", options, &[]);
    wait_until(Duration::from_secs(20), "the first container is UP", async || {
        teal.servers_up().await == 1
    })
    .await;

    let Traffic {
        path,
        rate,
        workers,
        connections,
    } = traffic;
    let load = Load::start_on(
        load_runtime(|| {}),
        teal.http,
        path,
        rate,
        workers,
        duration,
        connections,
    );
    tokio::time::sleep(duration / 4).await;
    // Read after the steady phase: the counter moves just after HAProxy
    // already serves the first container.
    let reloads_before = teal.reloads().await;
    let rollout_start = load.started.elapsed();
    Steady {
        teal,
        containers,
        old,
        load,
        reloads_before,
        rollout_start,
    }
}

/// Scale to two, wait until the new one is served, `docker stop` the old one.
async fn rollout(name: &str, connections: Connections, old_options: &[&str], new: New, duration: Duration) -> Row {
    let Steady {
        teal,
        mut containers,
        old,
        load,
        reloads_before,
        rollout_start,
    } = steady(name, gets(connections), old_options, duration).await;
    let new_id = containers.run("web", new.options, new.command);
    let started = Instant::now();

    let mut start_to_routed = None;
    match new.expect {
        Expect::Healthy => {
            let seen = wait_until(Duration::from_secs(40), "the new container is served", async || {
                load.first_seen(&new_id).is_some()
            })
            .await;
            if seen {
                start_to_routed = load.first_seen(&new_id).map(|t| t.saturating_duration_since(started));
                containers.stop(&old, 2);
                containers.remove(&old);
            }
        }
        Expect::NeverHealthy => {
            tokio::time::sleep(Duration::from_secs(15)).await;
            if load.first_seen(&new_id).is_some() {
                eprintln!("  {name}: the never-healthy container got traffic");
            }
            containers.remove(&new_id);
        }
    }
    finish(name, &teal, load, rollout_start, reloads_before, start_to_routed).await
}

/// Once the rollout is done: the rest of the load, and the row. The
/// rollout's window ends 2 s from now.
async fn finish(
    name: &str,
    teal: &Teal,
    load: Load,
    rollout_start: Duration,
    reloads_before: u64,
    start_to_routed: Option<Duration>,
) -> Row {
    let rollout_end = load.started.elapsed() + Duration::from_secs(2);
    let pid = teal.pid();
    let (samples, errors) = load.finish().await;
    let reloads = teal.reloads().await - reloads_before;
    let (peak_rss, _) = stack::memory_mib(pid);
    if !errors.is_empty() {
        eprintln!("  {name}: errors {errors:?}");
    }
    Row::new(
        name,
        &samples,
        rollout_start,
        rollout_end,
        Some(reloads),
        start_to_routed,
        Some(peak_rss),
    )
}

/// What Docker alone does to the tail: the same load and the same Docker
/// work as `cc` (run a container, `docker stop -t 2` and remove one), or as
/// `sigterm` (the container exits at once on the stop), but on a container
/// teal ignores, so no routing changes. Its rollout p99 against its steady
/// p99 is this machine's floor for that ratio.
async fn control(name: &str, options: &[&str], duration: Duration) -> Row {
    let Steady {
        teal,
        mut containers,
        load,
        reloads_before,
        rollout_start,
        ..
    } = steady(name, gets(Connections::Close), &[], duration).await;
    let other = containers.run_unrouted(options);
    containers.stop(&other, 2);
    containers.remove(&other);
    let rollout_end = load.started.elapsed() + Duration::from_secs(2);
    let (samples, errors) = load.finish().await;
    let reloads = teal.reloads().await - reloads_before;
    if !errors.is_empty() {
        eprintln!("  {name}: errors {errors:?}");
    }
    Row::new(name, &samples, rollout_start, rollout_end, Some(reloads), None, None)
}

/// For contrast: `docker-compose up -d --force-recreate` of a container
/// published on loopback behind a static HAProxy config.
async fn naive(duration: Duration) -> Row {
    let prefix = unique("naive");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).expect("dir");
    let published = stack::free_addr();
    let compose = format!(
        "version: \"2.4\"\nservices:\n  web:\n    image: {}\n    init: true\n    \
         ports: [\"127.0.0.1:{}:8080\"]\n",
        app::IMAGE,
        published.port()
    );
    std::fs::write(dir.join("docker-compose.yml"), compose).expect("compose file");
    let compose = ComposeProject::new(&["docker-compose"], &dir.join("docker-compose.yml"), &prefix);
    compose.run(&["up", "-d"]);
    let bind = stack::free_addr();
    let haproxy = StaticHaproxy::start(&dir.join("haproxy"), bind, published);
    wait_until(Duration::from_secs(20), "the naive stack answers", async || {
        !stack::http_get(bind, "/").await.is_empty()
    })
    .await;
    let load = Load::start(bind, RATE, WORKERS, duration, Connections::Close);
    tokio::time::sleep(duration / 4).await;
    let rollout_start = load.started.elapsed();
    compose.run(&["up", "-d", "--force-recreate"]);
    let rollout_end = load.started.elapsed() + Duration::from_secs(2);
    let (samples, errors) = load.finish().await;
    drop(haproxy);
    drop(compose);
    let _ = std::fs::remove_dir_all(&dir);
    if !errors.is_empty() {
        eprintln!("  naive: errors {errors:?}");
    }
    Row::new("naive", &samples, rollout_start, rollout_end, None, None, None)
}

/// 100 containers started at once: time until all are UP and the reloads
/// it took; then 200 containers: teal's memory and its CPU when idle.
async fn burst() {
    let prefix = unique("burst");
    let teal = Teal::start(&prefix).await;
    let mut containers = Containers::new(&prefix);
    containers.run("web", &[], &[]);
    wait_until(Duration::from_secs(20), "the first container is UP", async || {
        teal.servers_up().await == 1
    })
    .await;
    let ids = containers.create_many("web", 100);
    let reloads_before = teal.reloads().await;
    let started = Instant::now();
    containers.start_all(&ids);
    let last_started = started.elapsed();
    let all_up = wait_until(Duration::from_secs(60), "101 servers UP", async || {
        teal.servers_up().await == 101
    })
    .await;
    let routable = started.elapsed();
    let reloads = teal.reloads().await - reloads_before;
    println!(
        "\nburst: 100 containers started in {:.2} s (docker), all UP in HAProxy {:.2} s after the first start \
         ({:.2} s after the last), {reloads} reloads{}",
        last_started.as_secs_f64(),
        routable.as_secs_f64(),
        (routable - last_started.min(routable)).as_secs_f64(),
        if all_up { "" } else { " (NOT all up)" }
    );

    let more = containers.create_many("web", 99);
    containers.start_all(&more);
    wait_until(Duration::from_secs(90), "200 servers UP", async || {
        teal.servers_up().await == 200
    })
    .await;
    let pid = teal.pid();
    let cpu_before = stack::cpu_time(pid);
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu = stack::cpu_time(pid) - cpu_before;
    let (peak, now) = stack::memory_mib(pid);
    println!(
        "200 containers: teal RSS {now:.1} MiB (peak {peak:.1} MiB); CPU while idle {:.0} ms over {} s ({:.2} %)",
        cpu.as_secs_f64() * 1000.0,
        idle.as_secs(),
        cpu.as_secs_f64() / idle.as_secs_f64() * 100.0
    );
}

struct Row {
    name: String,
    requests: usize,
    failed: usize,
    p50: f64,
    p99: f64,
    max: f64,
    steady_p99: f64,
    rollout_p99: f64,
    reloads: Option<u64>,
    start_to_routed: Option<Duration>,
    peak_rss: Option<f64>,
}

impl Row {
    fn new(
        name: &str,
        samples: &[Sample],
        rollout_start: Duration,
        rollout_end: Duration,
        reloads: Option<u64>,
        start_to_routed: Option<Duration>,
        peak_rss: Option<f64>,
    ) -> Row {
        let all: Vec<&Sample> = samples.iter().collect();
        let steady: Vec<&Sample> = samples.iter().filter(|s| s.at < rollout_start).collect();
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= rollout_start && s.at <= rollout_end)
            .collect();
        Row {
            name: name.to_owned(),
            requests: samples.len(),
            failed: samples.iter().filter(|s| !s.ok).count(),
            p50: percentile(&all, 50.0),
            p99: percentile(&all, 99.0),
            max: percentile(&all, 100.0),
            steady_p99: percentile(&steady, 99.0),
            rollout_p99: percentile(&during, 99.0),
            reloads,
            start_to_routed,
            peak_rss,
        }
    }

    fn header() -> String {
        format!(
            "{:<15} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10} {:>11} {:>6} {:>8} {:>10} {:>9}",
            "scenario",
            "requests",
            "failed",
            "p50 ms",
            "p99 ms",
            "max ms",
            "steady p99",
            "rollout p99",
            "ratio",
            "reloads",
            "start->200",
            "teal RSS"
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        write!(
            f,
            "{:<15} {:>8} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>10.1} {:>11.1} {:>5.1}x {:>8} {:>10} {:>9}",
            self.name,
            self.requests,
            self.failed,
            self.p50,
            self.p99,
            self.max,
            self.steady_p99,
            self.rollout_p99,
            self.rollout_p99 / self.steady_p99,
            or_dash(self.reloads.map(|r| r.to_string())),
            or_dash(
                self.start_to_routed
                    .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            ),
            or_dash(self.peak_rss.map(|m| format!("{m:.1} MiB"))),
        )
    }
}
