use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::model::{Controls, Maintenance, Pause};
use crate::status::{DockerStatus, ExcludedStatus, HeldRequests};

fn server(name: &str, state: ServerState, haproxy: Option<HaproxyState>) -> ServerStatus {
    ServerStatus {
        name: format!("{name}-abcdef12"),
        container_id: "abcdef12".into(),
        container_name: name.into(),
        image: "app:1".into(),
        address: "172.18.0.2".into(),
        port: 8080,
        weight: 100,
        state,
        reason: None,
        slot: None,
        drained: false,
        node: None,
        haproxy,
        in_flight: None,
        counters: None,
    }
}

fn report() -> StatusReport {
    StatusReport {
        docker: DockerStatus {
            connected: true,
            error: None,
            swarm: None,
        },
        haproxy_running: true,
        haproxy: None,
        services: vec![ServiceStatus {
            name: "web".into(),
            mode: Mode::Http,
            hosts: vec!["shop.example".into()],
            path: Some("/api".into()),
            listen: None,
            live_slot: None,
            preview_of: None,
            servers: vec![
                server("web_1", ServerState::Ready, Some(HaproxyState::Up)),
                server("web_2", ServerState::Drain, Some(HaproxyState::Drain)),
            ],
            held: Some(HeldRequests {
                holding: 2,
                held: 9,
                released: 7,
                expired: 0,
                refused: 0,
                handed: 0,
            }),
            controls: Default::default(),
            canary: None,
        }],
        excluded: vec![ExcludedStatus {
            container_id: "1234".into(),
            container_name: "bad_1".into(),
            reason: "label teal.port=\"<script>alert(1)</script>\": not a port".into(),
        }],
        last_reload: None,
        refused: Default::default(),
        certificates: Vec::new(),
        deploys: Vec::new(),
    }
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn the_live_part_shows_routing_servers_traffic_and_who_is_left_out() {
    let mut traffic = TrafficNow::default();
    traffic.services.insert(
        "web".into(),
        Traffic {
            requests_per_s: 123.4,
            errors_per_s: 0.5,
            sessions: 3,
            response_ms: 12,
        },
    );
    traffic.servers.insert(
        ("web".into(), "web_1-abcdef12".into()),
        Traffic {
            requests_per_s: 2.4,
            errors_per_s: 0.0,
            sessions: 1,
            response_ms: 4,
        },
    );
    let mut history = History::default();
    history.push([(
        "web",
        Point {
            requests_per_s: 100.0,
            errors_per_s: 0.0,
        },
    )]);
    history.push([(
        "web",
        Point {
            requests_per_s: 50.0,
            errors_per_s: 50.0,
        },
    )]);
    let mut report = report();
    report.services[0].servers[1].drained = true;
    report.services[0].servers[1].node = Some("node-2".into());
    report.docker.swarm = Some(crate::status::SwarmStatus {
        node: "manager-1".into(),
        following: false,
        error: Some("no leader".into()),
        listed_at: None,
    });
    report.certificates.push(crate::acme::CertificateStatus {
        name: "shop.example".into(),
        source: Default::default(),
        names: vec![],
        issuer: None,
        not_after: None,
        renew_at: None,
        last_error: Some("challenge failed".into()),
        retry_at: Some("2027-01-15T08:10:00Z".into()),
        wanted: true,
    });
    let html = Pages::default().live(&report, &traffic, &history, at());
    assert!(html.contains("<h3>web</h3>"), "{html}");
    assert!(html.contains("drain <span class=\"tag\">drained</span>"), "{html}");
    assert!(
        html.contains("172.18.0.2:8080 <span class=\"tag\">on node-2</span>"),
        "{html}"
    );
    assert!(
        html.contains("Swarm <b class=\"bad\">not following</b> (via manager-1: no leader)"),
        "{html}"
    );
    assert!(
        html.contains("challenge failed (again at 2027-01-15T08:10:00Z)"),
        "{html}"
    );
    assert!(html.contains("shop.example /api"), "{html}");
    assert!(html.contains("data-container=\"web_1\""), "{html}");
    assert!(html.contains("<b>123</b> req/s"), "{html}");
    assert!(html.contains("<td class=\"n\">2.4</td>"), "the server's rate: {html}");
    assert!(html.contains("holding 2"), "{html}");
    assert!(html.contains("9 held since HAProxy started: 7 released"), "{html}");
    assert!(html.contains("<td class=\"warn\">DRAIN</td>"), "{html}");
    // The newest point is at the right edge, the peak at the top.
    assert!(html.contains("points=\"298,1.0 299,20.0\""), "{html}");
    assert!(html.contains("points=\"298,39.0 299,20.0\""), "{html}");
    assert!(html.contains("updated <time>2027-01-15T08:00:00Z</time>"), "{html}");
    assert!(html.contains("None yet: each <code>teal rollout</code>"), "{html}");
    // Whatever a label says is text, never markup.
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains('\r'));
}

#[test]
fn a_service_without_readings_yet_says_so() {
    let html = Pages::default().live(&report(), &TrafficNow::default(), &History::default(), at());
    assert!(html.contains("no traffic reading yet"), "{html}");
    assert!(!html.contains("<svg"), "no sparkline without a reading: {html}");
    assert!(html.contains("<td class=\"n quiet\">-</td>"), "{html}");
}

#[test]
fn maintenance_and_pause_show_as_badges() {
    let mut report = report();
    report.services[0].controls = Controls {
        maintenance: Some(Maintenance {
            message: "Back at <b>5</b>".into(),
            since: 1_800_000_000,
        }),
        pause: Some(Pause { until: 1_800_000_060 }),
    };
    let html = Pages::default().live(&report, &TrafficNow::default(), &History::default(), at());
    assert!(
        html.contains("maintenance since 2027-01-15T08:00:00Z: Back at &lt;b&gt;5&lt;/b&gt;"),
        "{html}"
    );
    assert!(html.contains("paused until 2027-01-15T08:01:00Z"), "{html}");
}

#[test]
fn a_canary_shows_its_share_and_header() {
    let mut report = report();
    report.services[0].canary = Some(crate::model::Canary {
        deploy: "3f2a1c".into(),
        old: vec![],
        new_percent: 10,
        header: Some(crate::model::HeaderName::parse("X-Canary").unwrap()),
    });
    let html = Pages::default().live(&report, &TrafficNow::default(), &History::default(), at());
    assert!(
        html.contains("canary 3f2a1c: 10% to the new, header X-Canary to the new"),
        "{html}"
    );
}

#[test]
fn deploy_reports_are_listed_newest_first() {
    let mut report = report();
    let deploy = |id: &str, outcome| crate::deploy::DeployReport {
        id: id.into(),
        service: "web".into(),
        kind: "rollout".into(),
        started: "2027-01-15T08:00:00Z".into(),
        duration_ms: 12_345,
        outcome,
        reason: None,
        old: Default::default(),
        new: crate::deploy::Traffic {
            servers: 2,
            requests: 900,
            ..Default::default()
        },
        canary: None,
    };
    report.deploys = vec![
        deploy("bbbbbb", crate::deploy::Outcome::RolledBack),
        deploy("aaaaaa", crate::deploy::Outcome::Completed),
    ];
    let html = Pages::default().live(&report, &TrafficNow::default(), &History::default(), at());
    let (newer, older) = (
        html.find("rollout bbbbbb").unwrap(),
        html.find("rollout aaaaaa").unwrap(),
    );
    assert!(newer < older, "{html}");
    assert!(html.contains("<td class=\"warn\">rolled back</td>"), "{html}");
    assert!(html.contains("<td class=\"n\">12.3</td>"), "{html}");
    assert!(html.contains("2 servers, 900 requests, 0 5xx"), "{html}");
}

#[test]
fn the_page_loads_only_from_its_own_listener() {
    let page = Pages::default().page("<p>live</p>");
    assert!(page.contains("<main id=\"live\">\n<p>live</p>\n</main>"), "{page}");
    // The policy allows no inline script or style, nor any other origin.
    assert!(!page.contains("<script>") && !page.contains(" style="), "{page}");
    let elsewhere: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.contains("://") || s.starts_with("//"))
        .collect();
    assert!(elsewhere.is_empty(), "the page refers to other origins: {elsewhere:?}");
}
