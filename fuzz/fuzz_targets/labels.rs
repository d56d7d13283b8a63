//! Label values from arbitrary bytes: the parser never panics, and whatever
//! it accepts renders to a config with exactly the lines, directives and
//! servers that a plain value of the same label would give.
//!
//! The input is split at 0xff bytes; piece N (lossy UTF-8) is the value of
//! the Nth label key. Run with `cargo +nightly fuzz run labels` from the
//! repository root.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use teal::model::{labels, ContainerFacts, ContainerId, ContainerUpdate, Health, Inventory, NetworkAddress, Scope};
use teal::render::{Context, ContextSettings, Renderer, DEFAULT_TEMPLATE};
use teal::settings::Settings;

const KEYS: &[&str] = &[
    "service",
    "port",
    "network",
    "host",
    "path",
    "mode",
    "listen",
    "health.path",
    "health.interval",
    "weight",
    "balance",
    "maxconn",
    "slot",
    "enable",
    "https-redirect",
];

fn container(labels: HashMap<String, String>) -> ContainerFacts {
    ContainerFacts {
        id: ContainerId(format!("{:0<64}", "f")),
        name: "fuzzed".into(),
        image: "app:1".into(),
        created: "2026-01-01T00:00:00Z".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        labels,
        running: true,
        paused: false,
        health: Health::None,
        host_network: false,
        networks: vec![NetworkAddress {
            name: "net".into(),
            ip: Some("10.0.0.2".parse().unwrap()),
            overlay: false,
        }],
        exposed_tcp_ports: vec![8080],
    }
}

fn render(labels: HashMap<String, String>) -> String {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    static SETTINGS: OnceLock<ContextSettings> = OnceLock::new();
    let renderer = RENDERER.get_or_init(|| Renderer::new(DEFAULT_TEMPLATE).unwrap());
    let settings = SETTINGS.get_or_init(|| {
        let settings = Settings {
            http_bind: "127.0.0.1:8080".parse().unwrap(),
            ..Settings::default()
        };
        ContextSettings::new(&settings).unwrap()
    });
    let scope = Scope {
        label_prefix: "teal".into(),
        project: None,
        own_networks: None,
        frontend_ports: [8080].into(),
    };
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Upsert(container(labels)));
    let snapshot = inventory.snapshot(&scope);
    renderer.render(&Context::new(settings, &snapshot)).expect("render")
}

/// Keyword and word count of each directive line; a host list is one word.
fn shape(config: &str) -> Vec<(String, usize)> {
    config
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let count = match words.iter().position(|w| *w == "str") {
                Some(i) if words[0] == "acl" => i + 2,
                _ => words.len(),
            };
            (words[0].to_owned(), count)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut values: HashMap<String, String> = HashMap::from([("teal.service".to_owned(), "web".to_owned())]);
    for (key, piece) in KEYS.iter().zip(data.split(|b| *b == 0xff)) {
        values.insert(format!("teal.{key}"), String::from_utf8_lossy(piece).into_owned());
    }
    let Ok(Some(parsed)) = labels::parse("teal", &values) else {
        return; // refused (or disabled): the container is left out whole
    };
    let config = render(values.clone());
    // The same labels, each replaced by a plain value of what was parsed:
    // the config must have the same shape.
    let mut plain = HashMap::from([("teal.service".to_owned(), parsed.service.to_string())]);
    let mut set = |key: &str, value: String| plain.insert(format!("teal.{key}"), value);
    if let Some(port) = parsed.port {
        set("port", port.to_string());
    }
    if let Some(network) = &parsed.network {
        set("network", network.clone());
    }
    if !parsed.hosts.is_empty() {
        set("host", "h.example".into());
    }
    if let Some(path) = &parsed.path {
        set("path", if path.as_str() == "/" { "/" } else { "/p" }.into());
    }
    set("mode", format!("{:?}", parsed.mode).to_lowercase());
    if let Some(listen) = parsed.listen {
        set("listen", listen.to_string());
    }
    if parsed.health.path.is_some() {
        set("health.path", "/h".into());
    }
    if parsed.maxconn.is_some() {
        set("maxconn", "1".into());
    }
    assert_eq!(shape(&config), shape(&render(plain)), "labels {values:?}:\n{config}");
    let servers = config.lines().filter(|l| l.trim_start().starts_with("server ")).count();
    assert!(servers <= 1, "{config}");
    // Host words are hosts the parser returned, whole.
    for line in config.lines().filter(|l| l.trim_start().starts_with("acl ")) {
        if let Some((_, hosts)) = line.split_once(" -m str ") {
            for host in hosts.split_whitespace() {
                assert!(parsed.hosts.iter().any(|h| h.as_str() == host), "{line:?}");
            }
        }
    }
});
