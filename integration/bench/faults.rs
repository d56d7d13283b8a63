//! The fault benchmark: one bad input or one crash, while a healthy service
//! takes steady load through teal's HAProxy. Prints one row per fault: the
//! healthy service's requests and failures from the fault on, and how long
//! teal took to converge.
//!
//! ```text
//! cargo bench --bench faults                        # every fault, 30 s window each
//! cargo bench --bench faults -- pem port --seconds 15
//! ```
//! Faults: host70, pem, template, port, kill-teal, kill-haproxy (see
//! `Fault::about`). Not part of the test run: it takes about 5 minutes.

mod app;
mod inject;
#[path = "../self_signed.rs"]
mod self_signed;
// Shared with the rollout benchmark, which uses the rest of them.
#[allow(dead_code)]
mod load;
#[allow(dead_code)]
mod stack;
mod start;

use std::time::{Duration, Instant};

use load::{Load, Sample};
use stack::{wait_until, Containers, Teal};

/// Requests per second on the healthy service, over new connections, sent
/// on time even while earlier ones wait (open loop).
const RATE: u32 = 500;
/// Load before the fault.
const STEADY: Duration = Duration::from_secs(3);
/// How long a new replica gets to be routed before its old one stops anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(5);
/// Between the fault and what follows it: teal has seen the fault by then.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ManyHosts,
    BrokenPem,
    RefusedTemplate,
    PortTaken,
    KillTeal,
    KillHaproxy,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::ManyHosts,
        Fault::BrokenPem,
        Fault::RefusedTemplate,
        Fault::PortTaken,
        Fault::KillTeal,
        Fault::KillHaproxy,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::ManyHosts => "host70",
            Fault::BrokenPem => "pem",
            Fault::RefusedTemplate => "template",
            Fault::PortTaken => "port",
            Fault::KillTeal => "kill-teal",
            Fault::KillHaproxy => "kill-haproxy",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Fault::ManyHosts => {
                "a container whose host label has 70 names; then web scales up, its old container stops"
            }
            Fault::BrokenPem => "a broken PEM dropped into --certs; then the same scale-up and stop",
            Fault::RefusedTemplate => "a template edit HAProxy refuses; then the same scale-up and stop",
            Fault::PortTaken => {
                "a tcp service on a port the bench holds; then 4 containers of another service, 2 s apart"
            }
            Fault::KillTeal => "teal SIGKILLed, restarted 5 s later",
            Fault::KillHaproxy => "HAProxy's master SIGKILLed",
        }
    }
}

fn main() {
    start::main(30, run);
}

async fn run(args: start::BenchArgs) {
    let seconds = args.seconds;
    let window = Duration::from_secs(seconds);
    println!(
        "teal fault benchmark: {RATE} req/s (open loop, new connection each) on a healthy service, \
         {seconds} s from each fault on"
    );
    for fault in Fault::ALL {
        println!("  {:<13} {}", fault.name(), fault.about());
    }
    println!("{}", Row::header());
    for fault in Fault::ALL {
        if args.wants(fault.name()) {
            println!("{}", measure(fault, window).await);
        }
    }
}

/// What a fault needs that lives as long as its run.
#[derive(Default)]
struct Setup {
    args: Vec<String>,
    certs: Option<inject::Certs>,
    template: Option<inject::Template>,
    held: Option<std::net::TcpListener>,
}

impl Setup {
    fn new(fault: Fault) -> Setup {
        let mut setup = Setup::default();
        match fault {
            Fault::BrokenPem => {
                let certs = inject::Certs::new("bench.test");
                let https = stack::free_addr().to_string();
                setup.args = vec!["--certs".into(), path(&certs.dir()), "--https-bind".into(), https];
                setup.certs = Some(certs);
            }
            Fault::RefusedTemplate => {
                let template = inject::Template::new();
                setup.args = vec!["--template".into(), path(&template.path())];
                setup.template = Some(template);
            }
            Fault::PortTaken => setup.held = Some(inject::hold_port()),
            _ => {}
        }
        setup
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What `/status` shows once teal has converged: `web` served by exactly
/// these containers, `side` by this many, all UP.
struct Converged {
    web: Vec<String>,
    side: usize,
}

async fn measure(fault: Fault, window: Duration) -> Row {
    let prefix = format!("bench{}f{}", std::process::id(), fault.name().replace('-', ""));
    let setup = Setup::new(fault);
    let mut teal = Teal::start_with(&prefix, &setup.args).await;
    let mut containers = Containers::new(&prefix);
    let old = containers.run("web", &[], &[]);
    let mut want = Converged {
        web: vec![old.clone()],
        side: 0,
    };
    wait_until(Duration::from_secs(20), "web's first container is UP", async || {
        converged(&teal, &want).await
    })
    .await;

    let load = Load::start_open(teal.http, RATE, STEADY + window);
    tokio::time::sleep(STEADY).await;
    let fault_at = load.started.elapsed();
    let end = load.started + STEADY + window;
    // What /status may name the fault by.
    let mut markers = Vec::new();
    let mut masters_before = inject::haproxy_masters(teal.dir());
    match fault {
        Fault::ManyHosts => {
            let name = format!("{prefix}-flood");
            let hosts = format!("{prefix}.host={}", inject::many_hosts(&prefix, 70));
            containers.run("flood", &["--name", &name, "--label", &hosts], &[]);
            markers = vec![name, "flood".to_owned()];
            want.web = scale_up_and_stop(&mut containers, &load, &old).await;
        }
        Fault::BrokenPem => {
            setup.certs.as_ref().expect("certs").add_broken("broken.pem");
            markers = vec!["broken.pem".to_owned()];
            want.web = scale_up_and_stop(&mut containers, &load, &old).await;
        }
        Fault::RefusedTemplate => {
            setup.template.as_ref().expect("template").break_it();
            markers = vec![inject::REFUSED_KEYWORD.to_owned()];
            want.web = scale_up_and_stop(&mut containers, &load, &old).await;
        }
        Fault::PortTaken => {
            let port = setup
                .held
                .as_ref()
                .expect("held port")
                .local_addr()
                .expect("addr")
                .port();
            let name = format!("{prefix}-portheld");
            #[rustfmt::skip]
            containers.run("portheld", &[
                "--name", &name,
                "--label", &format!("{prefix}.mode=tcp"),
                "--label", &format!("{prefix}.listen={port}"),
            ], &[]);
            markers = vec![name, "portheld".to_owned()];
            let host = format!("{prefix}.host=side.{prefix}.test");
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                containers.run("side", &["--label", &host], &[]);
            }
            want.side = 4;
        }
        Fault::KillTeal => {
            teal.kill();
            tokio::time::sleep(Duration::from_secs(5)).await;
            teal.restart().await;
        }
        Fault::KillHaproxy => {
            for &master in &masters_before {
                inject::sigkill(master);
            }
            // A master that outlives the kill would be a second one below.
            masters_before.clear();
        }
    }
    let last_step_at = load.started.elapsed();
    let converged_at = wait_converged(&teal, &want, &load, end).await;
    let note = note(fault, &teal, &markers, &masters_before).await;
    let (peak_rss, _) = stack::memory_mib(teal.pid());
    let (samples, errors) = load.finish().await;
    if !errors.is_empty() {
        eprintln!("  {}: errors {errors:?}", fault.name());
    }
    drop(containers);
    drop(teal);
    let times = Times {
        fault: fault_at,
        last_step: last_step_at,
        converged: converged_at,
        end: STEADY + window,
    };
    Row::new(fault, &samples, times, peak_rss, note)
}

/// Scale `web` to two, wait (a while) until the new one is served, then
/// stop and remove the old one whether or not it was. The containers `web`
/// should have then.
async fn scale_up_and_stop(containers: &mut Containers, load: &Load, old: &str) -> Vec<String> {
    tokio::time::sleep(SETTLE).await;
    let new = containers.run("web", &[], &[]);
    wait_until(ROUTE_WAIT, "the new web container is served", async || {
        load.first_seen(&new).is_some()
    })
    .await;
    containers.stop(old, 2);
    containers.remove(old);
    vec![new]
}

async fn converged(teal: &Teal, want: &Converged) -> bool {
    let Ok(report) = teal::status::fetch(teal.status, teal.dir()).await else {
        return false;
    };
    let servers = |name: &str| {
        report
            .services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.servers.as_slice())
            .unwrap_or_default()
    };
    let all_up = |name: &str| {
        servers(name)
            .iter()
            .all(|s| s.haproxy == Some(teal::status::HaproxyState::Up))
    };
    let web = servers("web");
    report.haproxy_running
        && web.len() == want.web.len()
        && want
            .web
            .iter()
            .all(|id| web.iter().any(|s| s.container_id.starts_with(id.as_str())))
        && all_up("web")
        && servers("side").len() == want.side
        && all_up("side")
}

/// Polls until `end`; when the last stretch of converged polls began (from
/// the start of the load), if the last poll was converged.
async fn wait_converged(teal: &Teal, want: &Converged, load: &Load, end: Instant) -> Option<Duration> {
    let mut since = None;
    while Instant::now() < end {
        if converged(teal, want).await {
            since.get_or_insert(load.started.elapsed());
        } else {
            since = None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    since
}

/// What teal's `/status` says about the fault, or about HAProxy after a kill.
async fn note(fault: Fault, teal: &Teal, markers: &[String], masters_before: &[i32]) -> String {
    let masters = inject::haproxy_masters(teal.dir());
    let haproxy = match (fault, masters.as_slice()) {
        (_, []) => "no HAProxy runs".to_owned(),
        (_, [_, _, ..]) => format!("{} HAProxy masters", masters.len()),
        (Fault::KillTeal, [one]) if masters_before.contains(one) => "HAProxy kept".to_owned(),
        (Fault::KillTeal | Fault::KillHaproxy, [_]) => "HAProxy started again".to_owned(),
        _ => String::new(),
    };
    let body = stack::http_get(teal.status, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let about_fault = if markers.is_empty() {
        None
    } else {
        Some(match reason_mentioning(&status, markers, "") {
            Some((place, reason)) => format!("{place}: {}", first_alert(&reason)),
            None => match status["last_reload"]["error"].as_str() {
                Some(error) if status["last_reload"]["ok"] == false => {
                    format!("last_reload (names no marker): {}", first_alert(error))
                }
                _ => "not in /status".to_owned(),
            },
        })
    };
    let note = [Some(haproxy).filter(|h| !h.is_empty()), about_fault]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    shorten(&note.split_whitespace().collect::<Vec<_>>().join(" "), 110)
}

/// HAProxy's first alert in `message` without its pid and file path, or
/// the message: the rest is teal's wording and "Fatal errors found".
fn first_alert(message: &str) -> &str {
    let alert = match message.split_once("[ALERT]") {
        Some((_, alert)) => alert.split("[ALERT]").next().unwrap_or(alert),
        None => message,
    };
    let alert = alert.split_once("config : ").map_or(alert, |(_, rest)| rest);
    // `parsing [/tmp/.../haproxy.cfg.next:51] : ...`, wherever it starts.
    match alert.split_once("parsing [").and_then(|(_, rest)| rest.split_once(']')) {
        Some((_, rest)) => rest.trim_start_matches([' ', ':']),
        None => alert,
    }
    .trim()
}

/// At most `max` characters: the start (what kind of message) and the end
/// (HAProxy's alert says what is wrong last).
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_owned();
    }
    let head: String = chars[..max / 3].iter().collect();
    let tail: String = chars[chars.len() - (max - max / 3 - 3)..].iter().collect();
    format!("{head} … {tail}")
}

/// Where in `/status` (a dotted path) a message about one of the markers
/// is, and the message: the reason or error of an object that names one
/// (a left-out container, a refused file or service), or a sentence that
/// does. Read as plain JSON, so it finds what a newer teal adds.
fn reason_mentioning(value: &serde_json::Value, markers: &[String], path: &str) -> Option<(String, String)> {
    let mentions = |text: &str| markers.iter().any(|m| text.contains(m.as_str()));
    match value {
        serde_json::Value::Object(fields) => {
            let names_one = fields.values().filter_map(|v| v.as_str()).any(mentions);
            let reason = fields
                .iter()
                .filter(|(key, _)| key.contains("reason") || key.contains("error"))
                .find_map(|(_, v)| v.as_str().filter(|s| !s.is_empty()));
            if let Some(reason) = reason.filter(|_| names_one) {
                return Some((path.to_owned(), reason.to_owned()));
            }
            let at = |key: &str| match path {
                "" => key.to_owned(),
                _ => format!("{path}.{key}"),
            };
            let sentence = fields.iter().find_map(|(key, v)| {
                let text = v.as_str().filter(|t| t.contains(' ') && mentions(t))?;
                Some((at(key), text.to_owned()))
            });
            sentence.or_else(|| {
                fields
                    .iter()
                    .find_map(|(key, v)| reason_mentioning(v, markers, &at(key)))
            })
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| reason_mentioning(v, markers, path)),
        _ => None,
    }
}

/// When things happened, from the start of the load.
struct Times {
    fault: Duration,
    /// The fault's last step: the old container removed, the last container
    /// started, teal restarted, HAProxy killed.
    last_step: Duration,
    /// The start of the converged stretch that lasted to the end, if any.
    converged: Option<Duration>,
    end: Duration,
}

struct Row {
    fault: Fault,
    requests: usize,
    failed: usize,
    /// From the fault's last step until teal had converged and no request
    /// failed after.
    converge: Option<Duration>,
    peak_rss: f64,
    note: String,
}

impl Row {
    fn new(fault: Fault, samples: &[Sample], times: Times, peak_rss: f64, note: String) -> Row {
        let during: Vec<&Sample> = samples.iter().filter(|s| s.at >= times.fault).collect();
        let last_failure = during.iter().filter(|s| !s.ok).map(|s| s.at).max();
        // Still failing in the last second: not converged, whatever /status says.
        let failing_at_end = last_failure.is_some_and(|at| at + Duration::from_secs(1) >= times.end);
        let converge = times
            .converged
            .filter(|_| !failing_at_end)
            .map(|at| at.max(last_failure.unwrap_or_default()).saturating_sub(times.last_step));
        Row {
            fault,
            requests: during.len(),
            failed: during.iter().filter(|s| !s.ok).count(),
            converge,
            peak_rss,
            note,
        }
    }

    fn header() -> String {
        format!(
            "{:<13} {:>8} {:>7} {:>9} {:>9}  {}",
            "fault", "requests", "failed", "converge", "teal RSS", "note"
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let converge = match self.converge {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => "never".to_owned(),
        };
        write!(
            f,
            "{:<13} {:>8} {:>7} {:>9} {:>5.1} MiB  {}",
            self.fault.name(),
            self.requests,
            self.failed,
            converge,
            self.peak_rss,
            self.note
        )
    }
}
