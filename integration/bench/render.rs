//! Rendering at scale: 10,000 servers through the default template.
//!
//! ```text
//! cargo bench --bench render
//! ```
//!
//! Each run replaces one container (as a rollout's step does), then builds
//! the snapshot and renders it twice: as teal's reconcile loop does, right
//! after the snapshot, re-rendering only the services that changed
//! ("render"), then whole ("render whole", what the first render after
//! start or a template edit costs). A whole render frees hundreds of
//! thousands of small blocks, which glibc's malloc consolidates at the
//! next large allocation, whoever makes it: a render in parts right after
//! one paid for that (19 of its 23 ms), a cost teal's loop, which never
//! renders whole between two renders in parts, does not have. So each run
//! ends with a large allocation, outside the timings, that pays it.
//! Times are the thread's CPU time, not wall time: on a shared machine
//! the wall clock mostly measures the other processes.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use teal::model::{ContainerFacts, ContainerId, ContainerUpdate, Health, Inventory, NetworkAddress, Scope};
use teal::render::{Context, ContextSettings, Renderer, DEFAULT_TEMPLATE};
use teal::settings::Settings;

const SERVICES: usize = 100;
const SERVERS: usize = 10_000;
const RUNS: usize = 20;

fn container(i: usize) -> ContainerFacts {
    ContainerFacts {
        id: ContainerId(format!("{i:064x}")),
        name: format!("app_{}_{i}", i % SERVICES),
        image: "app:1".into(),
        created: "2026-01-01T00:00:00Z".into(),
        started_at: "2026-01-01T00:00:01Z".into(),
        labels: [
            ("teal.service", format!("svc{}", i % SERVICES)),
            ("teal.host", format!("svc{}.example.com", i % SERVICES)),
        ]
        .into_iter()
        .collect(),
        running: true,
        paused: false,
        health: Health::None,
        host_network: false,
        networks: vec![NetworkAddress {
            name: "net".into(),
            ip: Some(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).into()),
            overlay: false,
        }],
        exposed_tcp_ports: vec![8080],
        node: None,
    }
}

/// CPU time of this thread so far.
fn cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("thread CPU clock")
        .into()
}

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, max {:.1} ms of CPU",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

fn main() {
    let settings = Settings::default();
    let scope = Scope {
        label_prefix: "teal".into(),
        project: None,
        own_networks: None,
        frontend_ports: settings.frontend_ports(),
    };
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync((0..SERVERS).map(container).collect()));
    let renderer = Renderer::new(DEFAULT_TEMPLATE).expect("default template");
    let context_settings = ContextSettings::new(&settings).expect("context settings");

    let mut snapshot_times = Vec::new();
    let mut whole_times = Vec::new();
    let mut render_times = Vec::new();
    let mut bytes = 0;
    renderer
        .render_snapshot(&context_settings, &inventory.snapshot(&scope))
        .expect("render");
    for run in 0..RUNS {
        inventory.apply(ContainerUpdate::Remove(container(run).id));
        inventory.apply(ContainerUpdate::Upsert(container(SERVERS + run)));
        let started = cpu();
        let snapshot = inventory.snapshot(&scope);
        snapshot_times.push(cpu() - started);
        let started = cpu();
        let text = renderer.render_snapshot(&context_settings, &snapshot).expect("render");
        render_times.push(cpu() - started);
        let started = cpu();
        let whole = renderer
            .render(&Context::new(&context_settings, &snapshot))
            .expect("render");
        whole_times.push(cpu() - started);
        // A large allocation: pays for the whole render's freed blocks (above).
        drop(std::hint::black_box(whole.clone()));
        assert!(text == whole, "rendering in parts gave another text");
        bytes = text.len();
    }
    println!(
        "{SERVERS} servers in {SERVICES} services, {RUNS} runs, {} KiB of haproxy.cfg",
        bytes / 1024
    );
    println!("  snapshot:     {}", stats(snapshot_times));
    println!("  render whole: {}", stats(whole_times));
    println!("  render:       {}", stats(render_times));
}
