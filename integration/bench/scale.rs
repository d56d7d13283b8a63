//! teal at scale, by simulation: a fake Docker daemon ([`fake_docker`])
//! holding 10,000 running containers in 500 services, against a real
//! `teal run` and its real HAProxy. Once everything is routed, a churn of
//! 200 Docker events per second: replacements, each a new container's
//! `start`, then 1 s later the old one's `kill` (SIGTERM), 0.5 s later its
//! `die` and `stop`, and its `destroy` 0.5 s after that.
//!
//! ```text
//! cargo bench --bench scale                  # 60 s of churn
//! cargo bench --bench scale -- --seconds 20
//! ```
//!
//! Prints teal's memory and CPU, the reloads during the churn, and event to
//! applied: from the fake daemon sending an event to HAProxy's admin socket
//! showing its effect (`start`: the server there and not in maintenance;
//! `kill`: draining, or gone; `die`: gone), polled every 2 ms per backend. `stop` and `destroy` change nothing in HAProxy: not timed.
//!
//! Every container's address is on loopback (127.1.0.0 and up), so HAProxy's
//! checks never leave the machine; they run every 60 s
//! (`teal.health.interval`), so the bench measures teal rather than
//! 20,000 health checks a second.

// The stack of the rollout benchmark, of which this one needs only teal.
#[allow(dead_code)]
mod app;
mod fake_docker;
#[allow(dead_code)]
mod stack;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_docker::{Action, Container, FakeDocker};
use stack::{cpu_time, memory_mib, wait_until, Teal};

const SERVICES: usize = 500;
const PER_SERVICE: usize = 20;
const EVENTS_PER_SECOND: u32 = 200;
/// Events of one replacement, and when each comes after its `start`.
const REPLACEMENT: [(Action, Duration); 5] = [
    (Action::Start, Duration::ZERO),
    (Action::Kill, Duration::from_millis(1000)),
    (Action::Die, Duration::from_millis(1500)),
    (Action::Stop, Duration::from_millis(1505)),
    (Action::Destroy, Duration::from_millis(2000)),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(60);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(run(Duration::from_secs(seconds)));
}

/// The containers of the simulation: names, ids and addresses handed out in
/// order, never twice.
struct Fleet {
    label_prefix: String,
    next: u32,
    /// Each service's running containers, oldest first.
    services: Vec<VecDeque<Container>>,
}

impl Fleet {
    fn container(&mut self, service: usize) -> Container {
        let n = self.next;
        self.next += 1;
        let prefix = &self.label_prefix;
        let labels = HashMap::from([
            (format!("{prefix}.service"), format!("svc{service}")),
            (format!("{prefix}.host"), format!("svc{service}.example.com")),
            (format!("{prefix}.health.interval"), "60s".to_owned()),
            // What compose puts on every container it runs.
            ("com.docker.compose.project".into(), "sim".into()),
            ("com.docker.compose.service".into(), format!("svc{service}")),
            ("com.docker.compose.container-number".into(), n.to_string()),
            ("com.docker.compose.oneoff".into(), "False".into()),
            ("com.docker.compose.version".into(), "1.29.2".into()),
            ("com.docker.compose.config-hash".into(), format!("{:064x}", service)),
            ("com.docker.compose.project.working_dir".into(), "/srv/sim".into()),
            (
                "com.docker.compose.project.config_files".into(),
                "/srv/sim/docker-compose.yml".into(),
            ),
        ]);
        Container::new(
            // Ids that differ in their first digits, as Docker's do.
            format!("{:016x}{:048x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15), n),
            format!("sim_svc{service}_{n}"),
            labels,
            Ipv4Addr::from(0x7f01_0000 + n),
        )
    }
}

async fn run(churn: Duration) {
    let prefix = format!("scale{}", std::process::id());
    let socket = std::env::temp_dir().join(format!("{prefix}-docker.sock"));
    let fake = FakeDocker::start(&socket);
    let mut fleet = Fleet {
        label_prefix: prefix.clone(),
        next: 0,
        services: vec![VecDeque::new(); SERVICES],
    };
    for service in 0..SERVICES {
        for _ in 0..PER_SERVICE {
            let container = fleet.container(service);
            fake.add_running(container.clone());
            fleet.services[service].push_back(container);
        }
    }
    println!(
        "teal at scale: a fake Docker with {} containers in {SERVICES} services, {EVENTS_PER_SECOND} events/s for {} s",
        SERVICES * PER_SERVICE,
        churn.as_secs()
    );

    let started = Instant::now();
    let teal = Teal::start_with(&prefix, &["--docker-host".to_owned(), fake.host()]).await;
    let admin = teal.dir().join("haproxy.sock");
    let all = SERVICES * PER_SERVICE;
    let routed = wait_until(Duration::from_secs(300), "every server in HAProxy", async || {
        server_count(&admin).await == all && fake.listeners() > 0
    })
    .await;
    assert!(
        routed,
        "teal did not route all {all} servers; see {}",
        teal.dir().join("teal.log").display()
    );
    let start_up = started.elapsed();
    let (peak_at_start, _) = memory_mib(teal.pid());
    let reloads_before = teal.reloads().await;
    let cpu_before = cpu_time(teal.pid());

    // The churn's timeline: replacements every 1/40 s, five events each.
    let per_replacement = REPLACEMENT.len() as u32;
    let every = Duration::from_secs(1) * per_replacement / EVENTS_PER_SECOND;
    let mut timeline: Vec<(Duration, Action, usize, Container)> = Vec::new();
    let mut at = Duration::ZERO;
    let mut service = 0;
    while at + REPLACEMENT[per_replacement as usize - 1].1 < churn {
        let new = fleet.container(service);
        let old = fleet.services[service].pop_front().expect("a service is never empty");
        fake.add_created(new.clone());
        for (action, after) in REPLACEMENT {
            let container = if action == Action::Start { &new } else { &old };
            timeline.push((at + after, action, service, container.clone()));
        }
        fleet.services[service].push_back(new);
        service = (service + 1) % SERVICES;
        at += every;
    }
    timeline.sort_by_key(|(at, ..)| *at);

    let pending: Arc<Mutex<Vec<Expectation>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<(Action, Duration)>>> = Arc::default();
    let poller = Poller::start(admin.clone(), pending.clone(), latencies.clone());
    let churn_started = tokio::time::Instant::now();
    for (at, action, service, container) in &timeline {
        tokio::time::sleep_until(churn_started + *at).await;
        let sent = fake.emit(&container.id, *action);
        if matches!(action, Action::Start | Action::Kill | Action::Die) {
            pending.lock().unwrap().push(Expectation {
                backend: format!("svc{service}"),
                address: container.ip.to_string(),
                action: *action,
                sent,
            });
        }
    }
    let churned = churn_started.elapsed();
    let settled = wait_until(Duration::from_secs(30), "every event applied", async || {
        pending.lock().unwrap().is_empty()
    })
    .await;
    let cpu = cpu_time(teal.pid()) - cpu_before;
    let reloads = teal.reloads().await - reloads_before;
    let (peak, now) = memory_mib(teal.pid());
    drop(poller);
    if std::env::var_os("TEAL_SCALE_KEEP_LOG").is_some() {
        let kept = std::env::temp_dir().join(format!("{prefix}-teal.log"));
        let _ = std::fs::copy(teal.dir().join("teal.log"), &kept);
        println!("  (teal's log: {})", kept.display());
    }

    let latencies = latencies.lock().unwrap().clone();
    let never = pending.lock().unwrap().len();
    println!(
        "  start-up: {all} servers routed {:.1} s after teal started; teal RSS then {peak_at_start:.1} MiB",
        start_up.as_secs_f64()
    );
    println!(
        "  churn: {} events in {:.1} s ({:.0}/s), {} of them timed",
        timeline.len(),
        churned.as_secs_f64(),
        timeline.len() as f64 / churned.as_secs_f64(),
        latencies.len() + never
    );
    println!(
        "  event to applied: {}",
        stats(latencies.iter().map(|(_, d)| *d).collect())
    );
    for action in [Action::Start, Action::Kill, Action::Die] {
        let of: Vec<Duration> = latencies
            .iter()
            .filter(|(a, _)| *a == action)
            .map(|(_, d)| *d)
            .collect();
        println!("    {:<7} {}", format!("{action:?}:").to_lowercase(), stats(of));
    }
    if !settled {
        println!("  NOT APPLIED within 30 s of the churn's end: {never} events");
    }
    println!("  reloads during the churn: {reloads}");
    println!(
        "  teal CPU during the churn: {:.1} s over {:.1} s ({:.0} % of one core)",
        cpu.as_secs_f64(),
        churned.as_secs_f64(),
        cpu.as_secs_f64() / churned.as_secs_f64() * 100.0
    );
    println!("  teal RSS: {now:.1} MiB now, peak {peak:.1} MiB");
}

/// An event's effect, to be seen in HAProxy.
struct Expectation {
    backend: String,
    address: String,
    action: Action,
    sent: Instant,
}

impl Expectation {
    /// Whether HAProxy's `show servers state` lines of the backend show it.
    fn met(&self, servers: &[ServerLine]) -> bool {
        let server = servers.iter().find(|s| s.address == self.address);
        match self.action {
            Action::Start => server.is_some_and(|s| s.admin_state & ADMIN_FORCED_MAINT == 0),
            Action::Kill => server.is_none_or(|s| s.admin_state & ADMIN_FORCED_DRAIN != 0),
            Action::Die => server.is_none(),
            Action::Stop | Action::Destroy => true,
        }
    }
}

/// `srv_admin_state` bits (HAProxy's SRV_ADMF_FMAINT and SRV_ADMF_FDRAIN).
const ADMIN_FORCED_MAINT: u32 = 0x01;
const ADMIN_FORCED_DRAIN: u32 = 0x08;

struct ServerLine {
    address: String,
    admin_state: u32,
}

/// Polls HAProxy on a thread of its own, so that the emitter's timing
/// does not share it; stops when dropped.
struct Poller(Option<tokio::runtime::Runtime>);

impl Poller {
    fn start(admin: PathBuf, pending: Arc<Mutex<Vec<Expectation>>>, done: Arc<Mutex<Vec<(Action, Duration)>>>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("poller")
            .enable_all()
            .build()
            .expect("poller runtime");
        runtime.spawn(poll(admin, pending, done));
        Poller(Some(runtime))
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// At most this many backends are asked per round, the ones with the
/// oldest events first: a teal that falls behind must not have the
/// benchmark's polling load HAProxy ever more.
const BACKENDS_PER_ROUND: usize = 16;

/// Checks the pending expectations every 2 ms, one
/// `show servers state BACKEND` per backend with any.
async fn poll(admin: PathBuf, pending: Arc<Mutex<Vec<Expectation>>>, done: Arc<Mutex<Vec<(Action, Duration)>>>) {
    loop {
        let backends: Vec<String> = {
            let pending = pending.lock().unwrap();
            let mut names: Vec<String> = Vec::new();
            for expectation in pending.iter() {
                if names.len() == BACKENDS_PER_ROUND {
                    break;
                }
                if !names.contains(&expectation.backend) {
                    names.push(expectation.backend.clone());
                }
            }
            names
        };
        let mut states: BTreeMap<String, Vec<ServerLine>> = BTreeMap::new();
        for backend in backends {
            let Ok(answer) = teal::apply::admin_command(&admin, &format!("show servers state {backend}")).await else {
                continue;
            };
            states.insert(backend, parse_servers_state(&answer));
        }
        let now = Instant::now();
        pending.lock().unwrap().retain(|e| match states.get(&e.backend) {
            Some(servers) if e.met(servers) => {
                done.lock().unwrap().push((e.action, now - e.sent));
                false
            }
            _ => true,
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `show servers state` lines: `be_id be_name srv_id srv_name srv_addr
/// srv_op_state srv_admin_state ...`, after a version line and a header.
fn parse_servers_state(answer: &str) -> Vec<ServerLine> {
    answer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(ServerLine {
                address: fields.get(4)?.to_string(),
                admin_state: fields.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

/// The containers' servers, not each backend's `teal_hold`.
async fn server_count(admin: &Path) -> usize {
    match teal::apply::admin_command(admin, "show servers state").await {
        Ok(answer) => answer
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split_whitespace().nth(3).is_some_and(|name| name != "teal_hold"))
            .count(),
        Err(_) => 0,
    }
}

fn stats(mut times: Vec<Duration>) -> String {
    if times.is_empty() {
        return "none".to_owned();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        times.len()
    )
}
