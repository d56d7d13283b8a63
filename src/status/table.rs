//! `teal status`: the report as a table a person reads at a glance.

use std::fmt::Write as _;

use super::StatusReport;

/// Prints the report; colours only when `colour` (a terminal).
pub fn print_table(report: &StatusReport, colour: bool) {
    print!("{}", table(report, colour));
}

fn paint(text: &str, colour: bool) -> String {
    let code = match text {
        "UP" | "ready" | "ok" | "connected" | "following" => "32",
        "DRAIN" | "drain" | "STARTING" => "33",
        "DOWN" | "MAINT" | "maint" | "failed" | "disconnected" | "STOPPING" | "not following" => "31",
        _ => return text.to_owned(),
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn table(report: &StatusReport, colour: bool) -> String {
    let mut out = String::new();
    let docker = if report.docker.connected {
        "connected"
    } else {
        "disconnected"
    };
    let _ = write!(out, "docker: {}", paint(docker, colour));
    if let Some(error) = &report.docker.error {
        let _ = write!(out, " ({error})");
    }
    if let Some(swarm) = &report.docker.swarm {
        let following = if swarm.following { "following" } else { "not following" };
        let _ = write!(out, "   swarm: {} on {}", paint(following, colour), swarm.node);
        if let Some(error) = &swarm.error {
            let _ = write!(out, " ({error})");
        }
    }
    let haproxy = if report.haproxy_running { "ok" } else { "down" };
    let _ = write!(out, "   haproxy: {}", paint(haproxy, colour));
    if let Some(process) = &report.haproxy {
        let pid = process.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
        let adopted = if process.adopted { "adopted, " } else { "" };
        let _ = write!(
            out,
            " ({pid}{adopted}{} exits, {} restarts)",
            process.exits, process.restarts
        );
    }
    let _ = writeln!(out);
    if let Some(reload) = &report.last_reload {
        let result = if reload.ok {
            reload.outcome.as_deref().unwrap_or("ok")
        } else {
            "failed"
        };
        let _ = writeln!(out, "last apply: {} {}", reload.time, paint(result, colour));
        if let Some(error) = &reload.error {
            let _ = writeln!(out, "  {}", error.replace('\n', "\n  "));
        }
    }
    let _ = writeln!(out);
    // Swarm tasks say which node they run on; plain containers have none.
    let nodes = report
        .services
        .iter()
        .any(|service| service.servers.iter().any(|server| server.node.is_some()));
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .flat_map(|service| {
            let name = match (&service.preview_of, &service.live_slot) {
                (Some(of), _) => format!("{} (preview of {of})", service.name),
                (None, Some(live)) => format!("{} (live: {live})", service.name),
                (None, None) => service.name.clone(),
            };
            service.servers.iter().map(move |server| {
                let mut row = vec![name.clone(), server.container_name.clone()];
                if nodes {
                    row.push(server.node.clone().unwrap_or_else(|| "-".into()));
                }
                row.extend([
                    format!("{}:{}", server.address, server.port),
                    server.state.to_string(),
                    server.haproxy.map_or_else(|| "-".into(), |h| h.to_string()),
                    server.in_flight.map_or_else(|| "-".into(), |n| n.to_string()),
                    server.reason.clone().unwrap_or_default(),
                ]);
                row
            })
        })
        .collect();
    let mut header: Vec<String> = [
        "SERVICE",
        "CONTAINER",
        "ADDRESS",
        "STATE",
        "HAPROXY",
        "IN FLIGHT",
        "REASON",
    ]
    .map(String::from)
    .into();
    if nodes {
        header.insert(2, "NODE".into());
    }
    // STATE and HAPROXY are painted.
    let painted = [header.len() - 4, header.len() - 3];
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for (i, row) in std::iter::once(&header).chain(&rows).enumerate() {
        let mut line = String::new();
        for (col, (cell, width)) in row.iter().zip(&widths).enumerate() {
            // Pad before painting: escape codes have no width on screen.
            let padded = format!("{cell:<width$}  ");
            let shown = if i > 0 && painted.contains(&col) {
                padded.replacen(cell.as_str(), &paint(cell, colour), 1)
            } else {
                padded
            };
            line.push_str(&shown);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no services)");
    }
    for service in &report.services {
        if let Some(maintenance) = &service.controls.maintenance {
            let _ = writeln!(
                out,
                "{}: in maintenance since {} ({:?}); `teal maintenance {} off` ends it",
                service.name,
                unix_time(maintenance.since),
                maintenance.message,
                service.name
            );
        }
        if let Some(canary) = &service.canary {
            let weights: Vec<String> = service
                .servers
                .iter()
                .map(|s| format!("{} {}", s.container_name, s.weight))
                .collect();
            let _ = writeln!(
                out,
                "{}: canary of deploy {}: {}% of the traffic to the new containers (weights: {}){}",
                service.name,
                canary.deploy,
                canary.new_percent,
                weights.join(", "),
                canary
                    .header
                    .as_ref()
                    .map(|h| format!("; requests with header {h} go to the new containers"))
                    .unwrap_or_default()
            );
        }
        if let Some(pause) = &service.controls.pause {
            let _ = writeln!(
                out,
                "{}: paused until {}: requests are held; `teal resume {}` ends it",
                service.name,
                unix_time(pause.until),
                service.name
            );
        }
    }
    if !report.excluded.is_empty() {
        let _ = writeln!(out, "\nleft out:");
        for excluded in &report.excluded {
            let _ = writeln!(out, "  {}: {}", excluded.container_name, excluded.reason);
        }
    }
    let refused = &report.refused;
    if let Some(reason) = &refused.rendering {
        let _ = writeln!(out, "\ntemplate edit refused (the last good one renders): {reason}");
    }
    for certificate in &refused.certificates {
        let _ = writeln!(out, "certificate refused: {}: {}", certificate.file, certificate.reason);
    }
    if !report.certificates.is_empty() {
        let _ = writeln!(out, "\ncertificates:");
        for certificate in &report.certificates {
            let validity = match &certificate.not_after {
                Some(not_after) => format!("until {not_after}"),
                None => "none yet".to_owned(),
            };
            let source = match certificate.source {
                crate::acme::CertificateSource::Acme => "acme",
                crate::acme::CertificateSource::Certs => "--certs",
            };
            let _ = write!(out, "  {} ({source}): {validity}", certificate.name);
            if let Some(error) = &certificate.last_error {
                let _ = write!(out, "; {error}");
            }
            if !certificate.wanted {
                let _ = write!(out, " (no service asks for it; not renewed)");
            }
            let _ = writeln!(out);
        }
    }
    out
}

fn unix_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Mode;
    use crate::model::ServerState;
    use crate::status::{
        DockerStatus, ExcludedStatus, HaproxyProcess, HaproxyState, ServerStatus, ServiceStatus, SwarmStatus,
    };

    fn sample() -> StatusReport {
        StatusReport {
            docker: DockerStatus {
                connected: true,
                error: None,
                swarm: None,
            },
            haproxy_running: true,
            haproxy: Some(HaproxyProcess {
                pid: Some(42),
                adopted: true,
                running: true,
                exits: 1,
                restarts: 1,
                last_exit: None,
            }),
            services: vec![ServiceStatus {
                name: "web".into(),
                mode: Mode::Http,
                hosts: vec![],
                path: None,
                listen: None,
                live_slot: None,
                preview_of: None,
                servers: vec![ServerStatus {
                    name: "web_1-abcdef12".into(),
                    container_id: "abcdef12".into(),
                    container_name: "web_1".into(),
                    image: "app:1".into(),
                    address: "172.18.0.2".into(),
                    port: 8080,
                    weight: 100,
                    state: ServerState::Ready,
                    reason: None,
                    slot: None,
                    drained: false,
                    node: None,
                    haproxy: Some(HaproxyState::Up),
                    in_flight: Some(2),
                    counters: None,
                }],
                held: None,
                controls: crate::model::Controls {
                    maintenance: None,
                    pause: Some(crate::model::Pause { until: 1_800_000_000 }),
                },
                canary: Some(crate::model::Canary {
                    deploy: "3f2a1c".into(),
                    old: vec![],
                    new_percent: 10,
                    header: Some(crate::model::HeaderName::parse("X-Canary").unwrap()),
                }),
            }],
            excluded: vec![ExcludedStatus {
                container_id: "1234".into(),
                container_name: "bad_1".into(),
                reason: "label teal.port=\"abc\": not a port number (1-65535)".into(),
            }],
            last_reload: None,
            refused: Default::default(),
            certificates: Vec::new(),
            deploys: Vec::new(),
        }
    }

    #[test]
    fn plain_table() {
        let text = table(&sample(), false);
        assert!(
            text.contains("web      web_1      172.18.0.2:8080  ready  UP       2"),
            "{text}"
        );
        assert!(
            text.contains("haproxy: ok (pid 42, adopted, 1 exits, 1 restarts)"),
            "{text}"
        );
        assert!(text.contains("bad_1: label teal.port"), "{text}");
        assert!(
            text.contains("web: paused until 2027-01-15T08:00:00Z: requests are held; `teal resume web` ends it"),
            "{text}"
        );
        assert!(
            text.contains(
                "web: canary of deploy 3f2a1c: 10% of the traffic to the new containers (weights: web_1 100); \
                 requests with header X-Canary go to the new containers"
            ),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        assert!(!text.contains("NODE") && !text.contains("swarm:"), "{text}");
    }

    #[test]
    fn swarm_tasks_show_their_node() {
        let mut report = sample();
        report.services[0].servers[0].node = Some("n2".into());
        report.docker.swarm = Some(SwarmStatus {
            node: "n1".into(),
            following: false,
            error: Some("no answer in time".into()),
            listed_at: None,
        });
        let text = table(&report, false);
        for line in [
            "swarm: not following on n1 (no answer in time)",
            "SERVICE  CONTAINER  NODE  ADDRESS",
            "web      web_1      n2    172.18.0.2:8080  ready  UP       2",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
