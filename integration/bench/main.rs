//! The zero-downtime benchmark: real traffic through HAProxy while teal
//! follows a rollout, against the real dockerd. Prints one row per scenario;
//! the rollout scenarios and their controls run on Traefik 3.7 too (see
//! `traefik.rs`), each Traefik row after teal's.
//!
//! ```text
//! cargo bench --bench rollout                      # every scenario, 60 s of load each
//! cargo bench --bench rollout -- cc ka --seconds 20
//! cargo bench --bench rollout -- cc control --teal-only   # without Traefik
//! ```
//! Scenarios: cc, control, ka, control-ka, sigterm, control-sigterm,
//! slow-health, never-healthy, naive, recreate-v2, recreate-v1, restart,
//! stream-rollout, stream-stop, canary, canary-bad, burst,
//! event-to-routable. Not part of the test run: it takes about 35 minutes.

mod app;
mod canary;
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
mod timeline;
mod traefik;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use load::{load_runtime, percentile, Connections, Load, Sample};
use stack::{wait_until, ComposeProject, Containers, StaticHaproxy, Teal};
use traefik::Traefik;

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
    // The app ignores SIGTERM as PID 1: `docker stop -t 2` kills it after 2 s.
    let exits_slowly = plain;
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
    // Each rollout beside its control (the same Docker work on a container
    // the proxy ignores), teal's rows then Traefik's.
    let paired = [
        ("cc", Connections::Close, exits_slowly, "control"),
        ("ka", Connections::KeepAlive, exits_slowly, "control-ka"),
        ("sigterm", Connections::Close, exits_at_once, "control-sigterm"),
    ];
    // Read here, not by BenchArgs: only this benchmark has a peer.
    let peer = !std::env::args().any(|a| a == "--teal-only");
    for (name, connections, options, control_name) in paired {
        let mut ratios = Vec::new();
        ratios.push(pair::<Teal>(&args, name, connections, options, control_name, duration).await);
        if peer {
            ratios.push(pair::<Traefik>(&args, name, connections, options, control_name, duration).await);
        }
        for line in ratios.into_iter().flatten() {
            println!("{line}");
        }
    }
    for (name, new) in [("slow-health", slow_health), ("never-healthy", never_healthy)] {
        if args.wants(name) {
            println!(
                "{}",
                rollout::<Teal>(name, Connections::Close, plain, &new, duration).await
            );
            if peer {
                println!(
                    "{}",
                    rollout::<Traefik>(name, Connections::Close, plain, &new, duration).await
                );
            }
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
    for version in [canary::Version::Good, canary::Version::Bad] {
        if args.wants(version.name()) {
            println!("{}", canary::scenario(version, duration).await);
        }
    }
    if args.wants("burst") {
        burst().await;
    }
    if args.wants("event-to-routable") {
        routable::run(&unique("e2r")).await;
    }
}

/// What the load goes through: teal (with its HAProxy) or the peer.
trait Proxy: Sized {
    /// Its name in the rows.
    const NAME: &'static str;

    /// One started for the scenario `prefix`, routing the containers
    /// labelled `{prefix}.service` (and [`Proxy::labels`]).
    async fn start_for(prefix: &str) -> Self;

    /// What else a routed container carries for this proxy.
    fn labels(prefix: &str) -> Vec<String>;

    fn http(&self) -> SocketAddr;

    /// Its processes (teal's: teal and its HAProxy's).
    fn pids(&self) -> Vec<u32>;

    /// Reloads so far, where the proxy has such a thing.
    async fn reloads(&self) -> Option<u64>;

    /// Whether the service's one container, `id`, is served.
    async fn serves_only(&self, id: &str) -> bool;
}

impl Proxy for Teal {
    const NAME: &'static str = "teal";

    async fn start_for(prefix: &str) -> Self {
        Teal::start(prefix).await
    }

    fn labels(_prefix: &str) -> Vec<String> {
        Vec::new()
    }

    fn http(&self) -> SocketAddr {
        self.http
    }

    fn pids(&self) -> Vec<u32> {
        let haproxy = stack::processes_mentioning(&self.dir().to_string_lossy());
        let haproxy = haproxy.into_iter().map(|(pid, _)| pid as u32);
        [Teal::pid(self)].into_iter().chain(haproxy).collect()
    }

    async fn reloads(&self) -> Option<u64> {
        Some(Teal::reloads(self).await)
    }

    async fn serves_only(&self, _id: &str) -> bool {
        self.servers_up().await == 1
    }
}

impl Proxy for Traefik {
    const NAME: &'static str = "traefik";

    async fn start_for(prefix: &str) -> Self {
        Traefik::start(prefix).await
    }

    fn labels(prefix: &str) -> Vec<String> {
        traefik::labels(prefix)
    }

    fn http(&self) -> SocketAddr {
        self.http
    }

    fn pids(&self) -> Vec<u32> {
        vec![Traefik::pid(self)]
    }

    /// Traefik swaps its configuration in memory: nothing to count.
    async fn reloads(&self) -> Option<u64> {
        None
    }

    async fn serves_only(&self, id: &str) -> bool {
        self.serves(id).await
    }
}

/// A rollout scenario and its control on proxy `P`, as asked for; when
/// both ran, the line comparing their rollout p99s (the target: within
/// 1.2x).
async fn pair<P: Proxy>(
    args: &start::BenchArgs,
    name: &str,
    connections: Connections,
    options: &'static [&'static str],
    control_name: &str,
    duration: Duration,
) -> Option<String> {
    let new = New {
        options,
        command: &[],
        expect: Expect::Healthy,
    };
    let mut rollout_row = None;
    if args.wants(name) {
        let row = rollout::<P>(name, connections, options, &new, duration).await;
        println!("{row}");
        rollout_row = Some(row);
    }
    let mut control_row = None;
    if args.wants(control_name) {
        let row = control::<P>(control_name, connections, options, duration).await;
        println!("{row}");
        control_row = Some(row);
    }
    let (rollout_row, control_row) = (rollout_row?, control_row?);
    let ratio = rollout_row.rollout_p99 / control_row.rollout_p99;
    Some(format!(
        "{} {name}: rollout p99 {:.2} ms / {control_name}'s {:.2} ms = {ratio:.2}x ({} 1.2x)",
        P::NAME,
        rollout_row.rollout_p99,
        control_row.rollout_p99,
        if ratio <= 1.2 { "within" } else { "NOT within" },
    ))
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
/// served by proxy `P` under load for a quarter of the run.
struct Steady<P> {
    proxy: P,
    containers: Containers,
    /// The container's id, which is also its answer.
    old: String,
    load: Load,
    reloads_before: Option<u64>,
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

async fn steady<P: Proxy>(name: &str, traffic: Traffic, options: &[&str], duration: Duration) -> Steady<P> {
    let prefix = unique(&format!("{}{name}", P::NAME));
    let proxy = P::start_for(&prefix).await;
    let mut containers = Containers::with_labels(&prefix, P::labels(&prefix));
    let old = containers.run("web", options, &[]);
    wait_until(Duration::from_secs(20), "the first container is served", async || {
        proxy.serves_only(&old).await
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
        proxy.http(),
        path,
        rate,
        workers,
        duration,
        connections,
    );
    tokio::time::sleep(duration / 4).await;
    // Read after the steady phase: the counter moves just after HAProxy
    // already serves the first container.
    let reloads_before = proxy.reloads().await;
    let rollout_start = load.started.elapsed();
    Steady {
        proxy,
        containers,
        old,
        load,
        reloads_before,
        rollout_start,
    }
}

/// Scale to two, wait until the new one is served, `docker stop` the old one.
async fn rollout<P: Proxy>(
    name: &str,
    connections: Connections,
    old_options: &[&str],
    new: &New,
    duration: Duration,
) -> Row {
    let Steady {
        proxy,
        mut containers,
        old,
        load,
        reloads_before,
        rollout_start,
    } = steady::<P>(name, gets(connections), old_options, duration).await;
    let new_id = containers.run("web", new.options, new.command);
    let mut phases = Phases::new(rollout_start, Some(&new_id), proxy.pids());
    let started = Instant::now();
    phases.mark("docker run", &load);

    let mut start_to_routed = None;
    match new.expect {
        Expect::Healthy => {
            let seen = wait_until(Duration::from_secs(40), "the new container is served", async || {
                load.first_seen(&new_id).is_some()
            })
            .await;
            phases.mark("to served", &load);
            if seen {
                start_to_routed = load.first_seen(&new_id).map(|t| t.saturating_duration_since(started));
                containers.stop(&old, 2);
                phases.mark("docker stop", &load);
                containers.remove(&old);
                phases.mark("docker rm", &load);
                phases.cpu_until_now(proxy.pids());
            }
        }
        Expect::NeverHealthy => {
            tokio::time::sleep(Duration::from_secs(15)).await;
            phases.mark("15 s unhealthy", &load);
            if load.first_seen(&new_id).is_some() {
                eprintln!("  {name}: the never-healthy container got traffic");
            }
            containers.remove(&new_id);
            phases.mark("docker rm", &load);
        }
    }
    finish(
        name,
        &proxy,
        load,
        rollout_start,
        reloads_before,
        start_to_routed,
        Some(&phases),
    )
    .await
}

/// Once the rollout is done: the rest of the load, and the row. The
/// rollout's window ends 2 s from now.
async fn finish<P: Proxy>(
    name: &str,
    proxy: &P,
    load: Load,
    rollout_start: Duration,
    reloads_before: Option<u64>,
    start_to_routed: Option<Duration>,
    phases: Option<&Phases>,
) -> Row {
    let rollout_end = load.started.elapsed() + Duration::from_secs(2);
    let pids = proxy.pids();
    let (samples, errors) = load.finish().await;
    let reloads = proxy
        .reloads()
        .await
        .zip(reloads_before)
        .map(|(now, before)| now - before);
    // Each process's own peak, added up: shared pages count once per process.
    let peaks: Vec<f64> = pids.into_iter().map(|pid| stack::memory_mib(pid).0).collect();
    let own = (peaks.len() > 1).then(|| peaks[0]);
    let peak_rss = (peaks.iter().sum(), own);
    if !errors.is_empty() {
        eprintln!("  {} {name}: errors {errors:?}", P::NAME);
    }
    let mut row = Row::new(P::NAME, name, &samples, rollout_start, rollout_end);
    row.reloads = reloads;
    row.start_to_routed = start_to_routed;
    row.peak_rss = Some(peak_rss);
    row.phases = phases.map(|phases| phases.report(&samples));
    row
}

/// What Docker alone does to the tail: the same load and the same Docker
/// work as the rollout it is named after (run a container, `docker stop -t
/// 2` and remove one), but on a container the proxy ignores, so no
/// routing changes. Its rollout p99 is the floor for the rollout's.
async fn control<P: Proxy>(name: &str, connections: Connections, options: &[&str], duration: Duration) -> Row {
    let Steady {
        proxy,
        mut containers,
        load,
        reloads_before,
        rollout_start,
        ..
    } = steady::<P>(name, gets(connections), &[], duration).await;
    let mut phases = Phases::new(rollout_start, None, proxy.pids());
    let other = containers.run_unrouted(options);
    phases.mark("docker run", &load);
    containers.stop(&other, 2);
    phases.mark("docker stop", &load);
    containers.remove(&other);
    phases.mark("docker rm", &load);
    phases.cpu_until_now(proxy.pids());
    let mut row = finish(name, &proxy, load, rollout_start, reloads_before, None, Some(&phases)).await;
    row.peak_rss = None;
    row
}

/// The rollout window cut where each Docker step returned, to see which
/// step the slow requests ran beside; and the first answers of the new
/// container (a cold one would be slow).
struct Phases {
    /// Each phase's name and when it ended, from the start of the load,
    /// after the window's start.
    ends: Vec<(&'static str, Duration)>,
    start: Duration,
    /// The new container's id (its answer), if the scenario routes one.
    new: Option<String>,
    /// CPU time each process had used when the window started: the proxy's, Docker's.
    cpu_before: (HashMap<u32, Duration>, HashMap<u32, Duration>),
    /// CPU time the proxy's and Docker's processes used from the window's
    /// start to [`Phases::cpu_until_now`].
    cpu: Option<(Duration, Duration)>,
}

/// Docker's processes on this machine, by command name (as /proc shortens it).
const DOCKER_PROCESSES: &[&str] = &["dockerd", "containerd", "runc", "docker-init"];

/// CPU time used so far by each of `pids`.
fn cpu_times(pids: Vec<u32>) -> HashMap<u32, Duration> {
    pids.into_iter().map(|pid| (pid, stack::cpu_time(pid))).collect()
}

/// CPU time used by `pids` since `before` (all of it for those started since).
/// Processes that ended in between are not counted.
fn cpu_since(before: &HashMap<u32, Duration>, pids: Vec<u32>) -> Duration {
    cpu_times(pids)
        .into_iter()
        .map(|(pid, now)| now.saturating_sub(before.get(&pid).copied().unwrap_or_default()))
        .sum()
}

/// How many of the new container's first answers [`Phases::report`] looks at.
const FIRST_ANSWERS: usize = 50;

impl Phases {
    /// From `start`, with the proxy's processes `proxy`.
    fn new(start: Duration, new: Option<&str>, proxy: Vec<u32>) -> Phases {
        Phases {
            ends: Vec::new(),
            start,
            new: new.map(str::to_owned),
            cpu_before: (cpu_times(proxy), cpu_times(stack::processes_named(DOCKER_PROCESSES))),
            cpu: None,
        }
    }

    /// Reads the CPU the proxy's processes (now `proxy`) and Docker's used so far in the window.
    fn cpu_until_now(&mut self, proxy: Vec<u32>) {
        let docker = stack::processes_named(DOCKER_PROCESSES);
        self.cpu = Some((
            cpu_since(&self.cpu_before.0, proxy),
            cpu_since(&self.cpu_before.1, docker),
        ));
    }

    fn mark(&mut self, name: &'static str, load: &Load) {
        self.ends.push((name, load.started.elapsed()));
    }

    /// `phase p99 (requests)` for each phase and the 2 s after the last,
    /// then the p99 and max of the new container's first answers.
    fn report(&self, samples: &[Sample]) -> String {
        let mut from = self.start;
        let mut parts = Vec::new();
        let last = self.ends.last().map_or(self.start, |(_, end)| *end);
        for (name, to) in self
            .ends
            .iter()
            .copied()
            .chain([("after", last + Duration::from_secs(2))])
        {
            let within: Vec<&Sample> = samples.iter().filter(|s| s.at >= from && s.at < to).collect();
            parts.push(format!(
                "{name} {:.0} ms: p99 {:.1} ({})",
                (to - from).as_secs_f64() * 1000.0,
                percentile(&within, 99.0),
                within.len()
            ));
            from = to;
        }
        let new = self.new.as_deref().unwrap_or_default();
        let first: Vec<&Sample> = samples.iter().filter(|s| s.server == new).take(FIRST_ANSWERS).collect();
        if !new.is_empty() && !first.is_empty() {
            parts.push(format!(
                "new's first {}: p99 {:.1} max {:.1}",
                first.len(),
                percentile(&first, 99.0),
                percentile(&first, 100.0)
            ));
        }
        if let Some((proxy, docker)) = self.cpu {
            parts.push(format!(
                "CPU until rm: proxy {} ms, Docker {} ms",
                proxy.as_millis(),
                docker.as_millis()
            ));
        }
        format!("    {}", parts.join(" | "))
    }
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
    Row::new("haproxy", "naive", &samples, rollout_start, rollout_end)
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
    /// What the load went through: teal, traefik, or haproxy (the naive stack).
    proxy: &'static str,
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
    /// Peak resident memory: the proxy's processes added up, and (when
    /// there are more) its first process's own (teal's, without HAProxy's).
    peak_rss: Option<(f64, Option<f64>)>,
    /// [`Phases::report`], printed under the row.
    phases: Option<String>,
}

impl Row {
    /// Its latencies: of all `samples`, of those sent before
    /// `rollout_start` (steady) and of those sent until `rollout_end`.
    fn new(proxy: &'static str, name: &str, samples: &[Sample], rollout_start: Duration, rollout_end: Duration) -> Row {
        let all: Vec<&Sample> = samples.iter().collect();
        let steady: Vec<&Sample> = samples.iter().filter(|s| s.at < rollout_start).collect();
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= rollout_start && s.at <= rollout_end)
            .collect();
        Row {
            proxy,
            name: name.to_owned(),
            requests: samples.len(),
            failed: samples.iter().filter(|s| !s.ok).count(),
            p50: percentile(&all, 50.0),
            p99: percentile(&all, 99.0),
            max: percentile(&all, 100.0),
            steady_p99: percentile(&steady, 99.0),
            rollout_p99: percentile(&during, 99.0),
            reloads: None,
            start_to_routed: None,
            peak_rss: None,
            phases: None,
        }
    }

    fn header() -> String {
        format!(
            "{:<8} {:<15} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10} {:>11} {:>6} {:>8} {:>10} {:>9} {:>9}",
            "proxy",
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
            "proxy RSS",
            "teal RSS"
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        write!(
            f,
            "{:<8} {:<15} {:>8} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>10.1} {:>11.1} {:>5.1}x {:>8} {:>10} {:>9} {:>9}",
            self.proxy,
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
            or_dash(self.peak_rss.map(|(all, _)| format!("{all:.1} MiB"))),
            or_dash(self.peak_rss.and_then(|(_, own)| own).map(|m| format!("{m:.1} MiB"))),
        )?;
        if let Some(phases) = &self.phases {
            write!(f, "\n{phases}")?;
        }
        Ok(())
    }
}
