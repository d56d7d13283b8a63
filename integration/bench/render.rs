//! Rendering at scale: 10,000 servers through the default template.
//!
//! ```text
//! cargo bench --bench render
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
        labels: HashMap::from([
            ("teal.service".to_owned(), format!("svc{}", i % SERVICES)),
            ("teal.host".to_owned(), format!("svc{}.example.com", i % SERVICES)),
        ]),
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

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, max {:.1} ms",
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
    let mut render_times = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let snapshot = inventory.snapshot(&scope);
        snapshot_times.push(started.elapsed());
        let started = Instant::now();
        let text = renderer
            .render(&Context::new(&context_settings, &snapshot))
            .expect("render");
        render_times.push(started.elapsed());
        bytes = text.len();
    }
    println!(
        "{SERVERS} servers in {SERVICES} services, {RUNS} runs, {} KiB of haproxy.cfg",
        bytes / 1024
    );
    println!("  snapshot: {}", stats(snapshot_times));
    println!("  render:   {}", stats(render_times));
}
