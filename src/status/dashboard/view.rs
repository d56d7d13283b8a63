//! The dashboard's HTML: `/status` plus live traffic and sparklines, as the
//! values the embedded Handlebars templates read. Pure: everything it shows
//! comes in as arguments. Handlebars escapes every value it writes into
//! HTML, so a container name or a refusal reason is text, never markup.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handlebars::Handlebars;
use serde::Serialize;

use crate::deploy::{DeployReport, Outcome};
use crate::model::labels::Mode;
use crate::model::ServerState;
use crate::status::history::{History, Point, POINTS};
use crate::status::traffic::Traffic;
use crate::status::{HaproxyState, ServerStatus, ServiceStatus, StatusReport};

const PAGE: &str = include_str!("page.html.hbs");
const LIVE: &str = include_str!("live.html.hbs");
/// Deploy reports on the page; `/status` keeps more.
const DEPLOYS_SHOWN: usize = 8;

/// Traffic per backend and per server, as of the last two readings.
#[derive(Debug, Clone, Default)]
pub struct TrafficNow {
    pub services: HashMap<String, Traffic>,
    /// (backend, server); empty until two readings of servers were made.
    pub servers: HashMap<(String, String), Traffic>,
}

/// The two embedded templates, parsed once.
pub struct Pages {
    registry: Handlebars<'static>,
}

impl Default for Pages {
    fn default() -> Self {
        let mut registry = Handlebars::new();
        // The templates are part of the binary: a unit test renders both.
        registry
            .register_template_string("page", PAGE)
            .expect("the embedded dashboard page template parses");
        registry
            .register_template_string("live", LIVE)
            .expect("the embedded dashboard template parses");
        Self { registry }
    }
}

impl Pages {
    /// The part of the page that changes: sent again on every update.
    pub fn live(&self, report: &StatusReport, traffic: &TrafficNow, history: &History, at: SystemTime) -> String {
        let view = LiveView::new(report, traffic, history, at);
        self.registry
            .render("live", &view)
            .unwrap_or_else(|error| format!("<p class=\"bad\">teal could not render this view: {error}</p>"))
            // Server-sent events carry one line per `data:`; a lone CR would
            // end one early.
            .replace('\r', "")
    }

    /// The whole page around an already rendered live part.
    pub fn page(&self, live: &str) -> String {
        #[derive(Serialize)]
        struct PageView<'a> {
            live: &'a str,
        }
        self.registry
            .render("page", &PageView { live })
            .unwrap_or_else(|error| format!("teal could not render the dashboard: {error}"))
    }
}

#[derive(Serialize)]
struct LiveView<'a> {
    updated: String,
    docker: Cell,
    docker_error: Option<&'a str>,
    swarm: Option<Cell>,
    swarm_detail: Option<String>,
    haproxy: Cell,
    haproxy_detail: Option<String>,
    last_apply: Option<Cell>,
    last_apply_time: Option<&'a str>,
    last_apply_error: Option<&'a str>,
    services: Vec<ServiceView<'a>>,
    excluded: &'a [crate::status::ExcludedStatus],
    refused: &'a crate::isolate::Refusals,
    certificates: &'a [crate::acme::CertificateStatus],
    /// The recent deploys, newest first (`/status` has more).
    deploys: Vec<DeployRow<'a>>,
    /// Readings a sparkline spans, in minutes.
    spark_minutes: usize,
}

/// A value shown with the class that colours it.
#[derive(Serialize)]
struct Cell {
    text: String,
    class: &'static str,
}

impl Cell {
    fn new(text: impl Into<String>, class: &'static str) -> Self {
        Self {
            text: text.into(),
            class,
        }
    }
}

/// A deploy's report, as a row.
#[derive(Serialize)]
struct DeployRow<'a> {
    #[serde(flatten)]
    report: &'a DeployReport,
    outcome: Cell,
    seconds: String,
    old_traffic: String,
    new_traffic: String,
}

impl<'a> From<&'a DeployReport> for DeployRow<'a> {
    fn from(report: &'a DeployReport) -> Self {
        let class = match report.outcome {
            Outcome::Completed => "ok",
            Outcome::RolledBack => "warn",
            Outcome::Failed => "bad",
        };
        Self {
            report,
            outcome: Cell::new(report.outcome.as_str().replace('_', " "), class),
            seconds: format!("{:.1}", report.duration_ms as f64 / 1000.0),
            old_traffic: report.old.to_string(),
            new_traffic: report.new.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ServiceView<'a> {
    #[serde(flatten)]
    service: &'a ServiceStatus,
    route: String,
    slot: Option<String>,
    badges: Vec<Cell>,
    held: Option<String>,
    rows: Vec<ServerRow<'a>>,
    traffic: Option<TrafficCells>,
    spark: Option<Spark>,
}

#[derive(Serialize)]
struct ServerRow<'a> {
    #[serde(flatten)]
    server: &'a ServerStatus,
    state_class: &'static str,
    haproxy_state: Cell,
    traffic: Option<TrafficCells>,
}

#[derive(Serialize)]
struct TrafficCells {
    requests: String,
    errors: String,
    errors_class: &'static str,
    sessions: u64,
    response_ms: u64,
}

impl From<&Traffic> for TrafficCells {
    fn from(traffic: &Traffic) -> Self {
        Self {
            requests: per_second(traffic.requests_per_s),
            errors: per_second(traffic.errors_per_s),
            errors_class: if traffic.errors_per_s > 0.0 { "bad" } else { "" },
            sessions: traffic.sessions,
            response_ms: traffic.response_ms,
        }
    }
}

/// Polyline points in a `POINTS` x 40 box, newest on the right.
#[derive(Serialize)]
struct Spark {
    requests: String,
    errors: String,
    peak: String,
}

fn per_second(rate: f64) -> String {
    if rate == 0.0 {
        "0".to_owned()
    } else if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

impl<'a> LiveView<'a> {
    fn new(report: &'a StatusReport, traffic: &TrafficNow, history: &History, at: SystemTime) -> Self {
        let docker = if report.docker.connected {
            Cell::new("connected", "ok")
        } else {
            Cell::new("disconnected", "bad")
        };
        let haproxy = if report.haproxy_running {
            Cell::new("running", "ok")
        } else {
            Cell::new("not answering", "bad")
        };
        let haproxy_detail = report.haproxy.as_ref().map(|p| {
            let pid = p.pid.map(|pid| format!("pid {pid}, ")).unwrap_or_default();
            let adopted = if p.adopted { "adopted, " } else { "" };
            format!("{pid}{adopted}{} exits, {} restarts", p.exits, p.restarts)
        });
        let last_apply = report.last_reload.as_ref().map(|r| match (r.ok, r.left_out) {
            (true, _) => Cell::new(r.outcome.clone().unwrap_or_else(|| "ok".into()), "ok"),
            (false, true) => Cell::new("a refusal is left out", "warn"),
            (false, false) => Cell::new("failed", "bad"),
        });
        Self {
            updated: humantime::format_rfc3339_seconds(at).to_string(),
            docker,
            docker_error: report.docker.error.as_deref(),
            swarm: report.docker.swarm.as_ref().map(|s| {
                if s.following {
                    Cell::new("following", "ok")
                } else {
                    Cell::new("not following", "bad")
                }
            }),
            swarm_detail: report.docker.swarm.as_ref().map(|s| match &s.error {
                Some(error) => format!("via {}: {error}", s.node),
                None => format!("via {}", s.node),
            }),
            haproxy,
            haproxy_detail,
            last_apply,
            last_apply_time: report.last_reload.as_ref().map(|r| r.time.as_str()),
            last_apply_error: report.last_reload.as_ref().and_then(|r| r.error.as_deref()),
            services: report
                .services
                .iter()
                .map(|service| ServiceView::new(service, traffic, history))
                .collect(),
            excluded: &report.excluded,
            refused: &report.refused,
            certificates: &report.certificates,
            deploys: report.deploys.iter().take(DEPLOYS_SHOWN).map(DeployRow::from).collect(),
            spark_minutes: POINTS / 60,
        }
    }
}

impl<'a> ServiceView<'a> {
    fn new(service: &'a ServiceStatus, traffic: &TrafficNow, history: &History) -> Self {
        let route = match (service.mode, service.listen) {
            (Mode::Tcp, Some(port)) => format!("tcp :{port}"),
            (Mode::Tcp, None) => "tcp".to_owned(),
            (Mode::Http, _) => {
                let hosts = service.hosts.join(", ");
                match (hosts.is_empty(), &service.path) {
                    (true, None) => "any host, any path".to_owned(),
                    (true, Some(path)) => format!("path {path}"),
                    (false, None) => hosts,
                    (false, Some(path)) => format!("{hosts} {path}"),
                }
            }
        };
        let slot = match (&service.preview_of, service.live_slot) {
            (Some(of), _) => Some(format!("preview of {of}")),
            (None, Some(live)) => Some(format!("live slot: {live}")),
            (None, None) => None,
        };
        let mut badges = Vec::new();
        if let Some(maintenance) = &service.controls.maintenance {
            badges.push(Cell::new(
                format!(
                    "maintenance since {}: {}",
                    unix_time(maintenance.since),
                    maintenance.message
                ),
                "bad",
            ));
        }
        if let Some(pause) = &service.controls.pause {
            badges.push(Cell::new(format!("paused until {}", unix_time(pause.until)), "warn"));
        }
        if let Some(canary) = &service.canary {
            let header = canary
                .header
                .as_ref()
                .map(|h| format!(", header {h} to the new"))
                .unwrap_or_default();
            badges.push(Cell::new(
                format!("canary {}: {}% to the new{header}", canary.deploy, canary.new_percent),
                "warn",
            ));
        }
        if let Some(held) = service.held.filter(|h| h.holding > 0) {
            badges.push(Cell::new(format!("holding {}", held.holding), "warn"));
        }
        let held = service.held.filter(|h| h.held > 0).map(|h| {
            format!(
                "{} held since HAProxy started: {} released, {} expired, {} refused",
                h.held, h.released, h.expired, h.refused
            )
        });
        Self {
            service,
            route,
            slot,
            badges,
            held,
            rows: service
                .servers
                .iter()
                .map(|server| {
                    ServerRow::new(
                        server,
                        traffic.servers.get(&(service.name.clone(), server.name.clone())),
                    )
                })
                .collect(),
            traffic: traffic.services.get(&service.name).map(TrafficCells::from),
            spark: history.series(&service.name).map(|points| spark(&points)),
        }
    }
}

impl<'a> ServerRow<'a> {
    fn new(server: &'a ServerStatus, traffic: Option<&Traffic>) -> Self {
        let state_class = match server.state {
            ServerState::Ready => "ok",
            ServerState::Drain => "warn",
            ServerState::Maint => "bad",
        };
        let haproxy_state = match server.haproxy {
            None => Cell::new("-", ""),
            Some(state) => Cell::new(
                state.to_string(),
                match state {
                    HaproxyState::Up => "ok",
                    HaproxyState::Drain | HaproxyState::Starting => "warn",
                    HaproxyState::Down | HaproxyState::Maint | HaproxyState::Stopping => "bad",
                },
            ),
        };
        Self {
            server,
            state_class,
            haproxy_state,
            traffic: traffic.map(TrafficCells::from),
        }
    }
}

/// Unix seconds, as the rest of the page writes times.
fn unix_time(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// Both lines on one scale, the busiest second at the top.
fn spark(points: &[Point]) -> Spark {
    let peak = points
        .iter()
        .map(|p| p.requests_per_s.max(p.errors_per_s))
        .fold(0.0_f32, f32::max);
    let scale = if peak > 0.0 { 38.0 / peak } else { 0.0 };
    let offset = POINTS - points.len();
    let line = |value: fn(&Point) -> f32| {
        let mut text = String::with_capacity(points.len() * 8);
        for (i, point) in points.iter().enumerate() {
            let y = 39.0 - value(point) * scale;
            if i > 0 {
                text.push(' ');
            }
            text.push_str(&format!("{},{y:.1}", offset + i));
        }
        text
    };
    Spark {
        requests: line(|p| p.requests_per_s),
        errors: line(|p| p.errors_per_s),
        peak: per_second(peak as f64),
    }
}

#[cfg(test)]
mod tests;
