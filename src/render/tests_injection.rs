//! No label value, whatever its bytes, adds a line, a directive or a server
//! to haproxy.cfg; and every config rendered here passes `haproxy -c`.
//!
//! One container ("victim") gets an arbitrary value for one label, next to
//! two ordinary services. Its labels either parse, and the config has the
//! same shape as with a known-good value of that label, or they do not, and
//! the config is byte for byte the one without the container. The shape of
//! a config is, line by line, its keyword and its number of words (a host
//! list counts as one word: a label may validly name several hosts).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use proptest::prelude::*;

use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{labels, ContainerFacts, ContainerUpdate, Inventory, Snapshot};
use crate::settings::Settings;

pub(super) const HAPROXY: &str = "/usr/sbin/haproxy";

/// `haproxy -c` on `text`; `None` (with a message) when HAProxy is missing,
/// which fails the test under CI (`CI` set): a CI runner must have it.
pub(super) fn haproxy_check(text: &str) -> Option<Result<(), String>> {
    if !Path::new(HAPROXY).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and {HAPROXY} is missing: install haproxy (scripts/test.sh does, as root)"
        );
        eprintln!("SKIPPED haproxy -c: {HAPROXY} is missing (apt-get install haproxy; .ci installs it)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("haproxy.cfg");
    // The config names the hold script in --state-dir: load it from here.
    let script = dir.path().join("hold.lua");
    std::fs::write(&script, super::HOLD_SCRIPT).expect("write hold script");
    let loadable: String = text
        .lines()
        .map(|line| match line.trim_start().starts_with("lua-load ") {
            true => format!("    lua-load {}\n", script.display()),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&path, loadable).expect("write config");
    let out = std::process::Command::new(HAPROXY)
        .args(["-c", "-q", "-f"])
        .arg(&path)
        .output()
        .expect("run haproxy -c");
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}\n--- config ---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// Every label teal reads, each with known-good values that give the
/// config every shape a valid value can give it.
const KEYS: &[(&str, &[&str])] = &[
    // Joining an existing service is a valid value too.
    ("service", &["victim", "api", "web"]),
    ("port", &["8081"]),
    // A network it is not on: no server, but the service and its routes stay.
    ("network", &["net", "elsewhere"]),
    ("host", &["victim.example", "a.example,b.example"]),
    ("path", &["/v", "/"]),
    ("mode", &["http", "tcp"]),
    ("listen", &["7000"]),
    ("health.path", &["/healthz"]),
    ("health.interval", &["2s"]),
    ("weight", &["5"]),
    ("balance", &["leastconn"]),
    ("maxconn", &["10"]),
    ("slot", &["blue"]),
    ("enable", &["true", "false"]),
    ("https-redirect", &["true", "false"]),
];

fn victim(key: &str, value: &str) -> ContainerFacts {
    let mut f = facts("victim", "victim", "10.0.0.9");
    for (k, v) in [("host", "victim.example"), ("path", "/v"), ("listen", "7000")] {
        f.labels.insert(format!("teal.{k}"), v);
    }
    f.labels.insert(format!("teal.{key}"), value);
    f
}

fn others() -> Vec<ContainerFacts> {
    let mut api = facts("api", "api", "10.0.0.2");
    api.labels.insert("teal.host", "api.example");
    vec![api, facts("web", "web", "10.0.0.3")]
}

fn snapshot(victim: Option<ContainerFacts>) -> Snapshot {
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(others().into_iter().chain(victim).collect()));
    let mut snapshot = inventory.snapshot(&scope());
    // The reasons hold the raw value: the default template never renders
    // them, and a custom one would get them Debug-escaped, on one line.
    for excluded in &mut snapshot.excluded {
        assert!(!excluded.reason.contains('\n'), "{:?}", excluded.reason);
    }
    snapshot.excluded.clear();
    snapshot
}

fn render(snapshot: &Snapshot) -> String {
    let settings = Settings {
        http_bind: "127.0.0.1:8080".parse().unwrap(),
        ..Settings::default()
    };
    let settings = ContextSettings::new(&settings).expect("settings");
    static RENDERER: std::sync::OnceLock<Renderer> = std::sync::OnceLock::new();
    RENDERER
        .get_or_init(|| Renderer::new(DEFAULT_TEMPLATE).unwrap())
        .render(&Context::new(&settings, snapshot))
        .unwrap()
}

type Shape = Vec<(String, usize)>;

fn shape(config: &str) -> Shape {
    config
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            // `acl routeN_host var(txn.host) -m str HOST...`: hosts are one word.
            let count = match words.iter().position(|w| *w == "str") {
                Some(i) if words[0] == "acl" => i + 2,
                _ => words.len(),
            };
            (words[0].to_owned(), count)
        })
        .collect()
}

/// Comments may carry only what teal wrote; a value never starts one.
fn comments(config: &str) -> Vec<&str> {
    config.lines().filter(|l| l.trim_start().starts_with('#')).collect()
}

struct Baselines {
    without: String,
    /// Per key, the shapes its known-good values give.
    shapes: HashMap<&'static str, BTreeSet<Shape>>,
    comments: Vec<String>,
}

fn baselines() -> &'static Baselines {
    static B: std::sync::OnceLock<Baselines> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let without = render(&snapshot(None));
        let mut shapes = HashMap::new();
        for (key, goods) in KEYS {
            let set: BTreeSet<Shape> = goods
                .iter()
                .map(|good| render(&snapshot(Some(victim(key, good)))))
                .inspect(|text| validate_once(text))
                .map(|text| shape(&text))
                .collect();
            shapes.insert(*key, set);
        }
        validate_once(&without);
        Baselines {
            comments: comments(&without).into_iter().map(str::to_owned).collect(),
            without,
            shapes,
        }
    })
}

/// Each distinct config is run through `haproxy -c` once.
fn validate_once(text: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if !SEEN.lock().unwrap().insert(text.to_owned()) {
        return;
    }
    if let Some(Err(error)) = haproxy_check(text) {
        panic!("haproxy -c refused a rendered config: {error}");
    }
}

fn check(key: &'static str, value: &str) {
    let base = baselines();
    let text = render(&snapshot(Some(victim(key, value))));
    validate_once(&text);
    assert_eq!(comments(&text), base.comments, "{key}={value:?} changed the comments");
    let servers = text
        .lines()
        .filter(|l| l.trim_start().starts_with("server ") && !l.contains("server teal_hold "))
        .count();
    assert!(servers <= 3, "{key}={value:?} added a server:\n{text}");
    if text == base.without {
        return; // left out
    }
    assert!(
        base.shapes[key].contains(&shape(&text)),
        "{key}={value:?} changed the config's shape:\n{text}"
    );
    // Host lists are one word in the shape; each of their words must be a
    // host the parser returned, not a piece of one.
    let mut known = vec!["api.example".to_owned()];
    let parsed = labels::parse("teal", &victim(key, value).labels).unwrap().unwrap();
    known.extend(parsed.hosts.iter().map(|h| h.as_str().to_owned()));
    for line in text.lines().filter(|l| l.trim_start().starts_with("acl ")) {
        if let Some((_, hosts)) = line.split_once(" -m str ") {
            for host in hosts.split_whitespace() {
                assert!(
                    known.iter().any(|k| k == host),
                    "{key}={value:?} smuggled {host:?} into {line:?}"
                );
            }
        }
    }
}

/// Arbitrary text, and text built to break out: a good value of the key
/// with a line break, a comment, a quote or a space, then more words.
fn values(goods: &'static [&'static str]) -> impl Strategy<Value = String> {
    let good = prop::sample::select(goods.to_vec());
    let breaker = prop::sample::select(BREAKERS.to_vec());
    let tail = prop::sample::select(TAILS.to_vec());
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        (good.clone(), breaker.clone(), tail).prop_map(|(g, b, t)| format!("{g}{b}{t}")),
        (breaker.clone(), good.clone()).prop_map(|(b, g)| format!("{b}{g}")),
    ]
}

const BREAKERS: &[&str] = &[
    "\n", "\r\n", "\r", " ", "\t", "#", "\"", "'", "\\", "\u{0}", "\u{85}", "\u{2028}", ",", "%", "{", "}", "\u{a0}",
    "\u{3000}", ";", "/", ":",
];

const TAILS: &[&str] = &[
    "server evil 1.2.3.4:80",
    "http-request deny",
    "use_backend api",
    "evil.example",
    "x",
    "",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_label_value_changes_the_config_structure(
        (key, value) in prop::sample::select(KEYS.to_vec())
            .prop_flat_map(|(key, goods)| (Just(key), values(goods)))
    ) {
        check(key, &value);
    }
}

#[test]
fn every_key_against_every_breaker() {
    for (key, goods) in KEYS {
        for good in *goods {
            for breaker in BREAKERS {
                for tail in TAILS {
                    check(key, &format!("{good}{breaker}{tail}"));
                }
                check(key, &format!("{breaker}{good}"));
            }
        }
    }
}
