//! `teal drain CONTAINER`: take a container out of rotation and wait until
//! HAProxy has no request in flight on it, so that stopping it cuts
//! nothing. `teal rollout` does the same to each old container before it
//! stops it.
//!
//! The drain is written to `<state-dir>/drained.json` ([`crate::drained`]);
//! the daemon running on that state dir sets the server to `drain` through
//! the runtime API (no new requests; the ones in flight finish). The
//! command then polls the daemon's `/status` until HAProxy has the server
//! out of rotation with nothing in flight on it (current sessions plus
//! queued), or the timeout passes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::docker::Client;
use crate::drained::{self, Drained};
use crate::model::ServerState;
use crate::settings::DrainSettings;
use crate::state_file;
use crate::status::{self, HaproxyState, ServerStatus, StatusReport};

const POLL: Duration = Duration::from_millis(100);

pub async fn run(settings: DrainSettings) -> anyhow::Result<()> {
    let docker = crate::docker::connect(settings.docker_host.as_deref()).await?;
    let Some(container) = docker.inspect(&settings.container).await? else {
        anyhow::bail!(
            "no container {} on this Docker host (`docker ps -a` lists them)",
            settings.container
        );
    };
    let (id, name) = (container.id(), container.name());
    if settings.undo {
        return undo(&settings, id, name).await;
    }
    mark(&docker, &settings.state_dir, &[(id, name)]).await?;
    if !container.state().running {
        println!("{name}: drained; it is not running, so nothing is in flight on it");
        return Ok(());
    }
    let file = state_file::path::<Drained>(&settings.state_dir);
    let started = Instant::now();
    match until_idle(settings.status_bind, &settings.state_dir, id, settings.timeout).await {
        Ok(Idle::Idle) => println!(
            "{name}: out of rotation and idle after {:.1}s; it stays drained until it is removed \
             (`teal drain {name} --undo` puts it back)",
            started.elapsed().as_secs_f64()
        ),
        Ok(Idle::NotRouted(why)) => println!("{name}: drained; {why}, so no request goes to it"),
        Err(NotIdle::NoAnswer(error)) => anyhow::bail!(
            "{name} is drained in {}, but no teal answers at {} to apply it and tell when it is idle \
             ({error}): is `teal run` running there with --state-dir {}?",
            file.display(),
            settings.status_bind,
            settings.state_dir.display()
        ),
        Err(NotIdle::NotApplied) => anyhow::bail!(
            "{name} is drained in {}, but the teal at {} did not take it out of rotation within {:?}: \
             does it run with --state-dir {}? (see its log)",
            file.display(),
            settings.status_bind,
            settings.timeout,
            settings.state_dir.display()
        ),
        Err(NotIdle::InFlight(n)) => anyhow::bail!(
            "{name} is out of rotation but still has {n} request{} in flight after {:?}; it stays drained \
             (a longer --timeout waits longer)",
            if n == 1 { "" } else { "s" },
            settings.timeout
        ),
        Err(NotIdle::NotRouted(why)) => anyhow::bail!(
            "{name} is drained in {}, but {why}: is --status-bind the right teal? (`teal status` lists what it \
             routes)",
            file.display()
        ),
    }
    Ok(())
}

/// Drains `containers` (id, name) in the file, forgetting on the way the
/// entries of containers that no longer exist.
pub async fn mark(docker: &Client, state_dir: &Path, containers: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut gone = Vec::new();
    for id in Drained::load(state_dir)?.ids() {
        if matches!(docker.inspect(id).await, Ok(None)) {
            gone.push(id.to_owned());
        }
    }
    drained::store(state_dir, containers, &gone)?;
    Ok(())
}

/// Nothing in flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Idle {
    /// Out of rotation in HAProxy, and no request in flight on it.
    Idle,
    /// Not a server of the daemon (left out, or gone): no request goes to it.
    NotRouted(String),
}

/// Why a drain did not end idle in time.
#[derive(Debug, PartialEq, Eq)]
pub enum NotIdle {
    /// The daemon's `/status` did not answer at first.
    NoAnswer(String),
    /// The daemon did not take the server out of rotation.
    NotApplied,
    /// Out of rotation, these requests still in flight.
    InFlight(u64),
    /// The daemon knows nothing of the container, which runs.
    NotRouted(String),
}

/// Polls the daemon at `status_addr` until the container `id` is out of
/// rotation in HAProxy with nothing in flight, for at most `timeout`.
pub async fn until_idle(
    status_addr: SocketAddr,
    state_dir: &Path,
    id: &str,
    timeout: Duration,
) -> Result<Idle, NotIdle> {
    let deadline = Instant::now() + timeout;
    let mut last = match status::fetch(status_addr, state_dir).await {
        Ok(report) => stage(&report, status_addr, id),
        Err(error) => return Err(NotIdle::NoAnswer(format!("{error:#}"))),
    };
    loop {
        match last {
            Stage::Done(idle) => return Ok(idle),
            Stage::Unknown(why) => return Err(NotIdle::NotRouted(why)),
            Stage::Routed | Stage::InFlight(_) if Instant::now() >= deadline => {
                return Err(match last {
                    Stage::InFlight(n) => NotIdle::InFlight(n),
                    _ => NotIdle::NotApplied,
                });
            }
            Stage::Routed | Stage::InFlight(_) => {}
        }
        tokio::time::sleep(POLL).await;
        // A teal restarting for a moment does not end the wait.
        if let Ok(report) = status::fetch(status_addr, state_dir).await {
            last = stage(&report, status_addr, id);
        }
    }
}

/// Where a drain stands in one `/status` report.
enum Stage {
    Done(Idle),
    /// HAProxy still sends it new requests (the drain is not applied yet).
    Routed,
    InFlight(u64),
    Unknown(String),
}

fn stage(report: &StatusReport, status_addr: SocketAddr, id: &str) -> Stage {
    let server = report
        .services
        .iter()
        .flat_map(|s| s.servers.iter())
        .find(|s| s.container_id == id);
    let Some(server) = server else {
        return match report.excluded.iter().find(|e| e.container_id == id) {
            Some(excluded) => Stage::Done(Idle::NotRouted(format!("teal leaves it out ({})", excluded.reason))),
            None => Stage::Unknown(format!("the teal at {status_addr} does not route it")),
        };
    };
    if !out_of_rotation(server) {
        return Stage::Routed;
    }
    match (server.haproxy, server.in_flight) {
        (_, Some(0)) => Stage::Done(Idle::Idle),
        (_, Some(n)) => Stage::InFlight(n),
        // HAProxy runs and does not know the server: nothing goes to it.
        (None, None) if report.haproxy_running => Stage::Done(Idle::Idle),
        // HAProxy does not answer: nobody can tell yet.
        (_, None) => Stage::Routed,
    }
}

/// teal drains it and HAProxy sends it no new request.
fn out_of_rotation(server: &ServerStatus) -> bool {
    server.drained
        && !matches!(
            server.haproxy,
            Some(HaproxyState::Up | HaproxyState::Starting | HaproxyState::Stopping)
        )
}

/// `--undo`: back into rotation, once the daemon applies it.
async fn undo(settings: &DrainSettings, id: &str, name: &str) -> anyhow::Result<()> {
    if !drained::undo(&settings.state_dir, id)? {
        println!("{name} is not drained; nothing to undo");
        return Ok(());
    }
    let deadline = Instant::now() + settings.timeout;
    loop {
        let report = status::fetch(settings.status_bind, &settings.state_dir).await;
        let server = report.as_ref().ok().and_then(|r| {
            r.services
                .iter()
                .flat_map(|s| s.servers.iter())
                .find(|s| s.container_id == id)
        });
        match server {
            Some(server) if !server.drained && !still_draining(server) => {
                println!(
                    "{name}: back in rotation (teal: {}, HAProxy: {})",
                    server.state,
                    server.haproxy.map_or_else(|| "-".to_owned(), |h| h.to_string())
                );
                return Ok(());
            }
            None => {
                let why = match report {
                    Ok(_) => format!("the teal at {} does not route it", settings.status_bind),
                    Err(error) => format!("{error:#}"),
                };
                println!("{name}: no longer drained; {why}");
                return Ok(());
            }
            Some(_) if Instant::now() >= deadline => {
                return Err(anyhow::anyhow!(
                    "{name} is no longer drained in {}, but the teal at {} did not put it back within {:?}",
                    state_file::path::<Drained>(&settings.state_dir).display(),
                    settings.status_bind,
                    settings.timeout
                ))
                .context("does it run with the same --state-dir? (see its log)");
            }
            Some(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// HAProxy has not yet been told it is ready again.
fn still_draining(server: &ServerStatus) -> bool {
    server.state == ServerState::Ready && server.haproxy == Some(HaproxyState::Drain) && server.weight != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(drained: bool, haproxy: Option<HaproxyState>, in_flight: Option<u64>) -> StatusReport {
        let json = serde_json::json!({
            "docker": {"connected": true, "error": null}, "haproxy_running": true,
            "services": [{"name": "web", "mode": "http", "hosts": [], "path": null, "listen": null,
                "live_slot": null, "preview_of": null, "servers": [{"name": "a-1", "container_id": "c1",
                "container_name": "a", "image": "app:1", "address": "10.0.0.2", "port": 80, "weight": 100,
                "state": if drained { "drain" } else { "ready" }, "reason": null, "slot": null,
                "drained": drained, "haproxy": haproxy, "in_flight": in_flight}]}],
            "excluded": [{"container_id": "c2", "container_name": "b", "reason": "bad label"}],
            "last_reload": null
        });
        serde_json::from_value(json).unwrap()
    }

    fn stage_of(report: &StatusReport, id: &str) -> String {
        let addr: SocketAddr = "127.0.0.1:9180".parse().unwrap();
        match stage(report, addr, id) {
            Stage::Done(Idle::Idle) => "idle".into(),
            Stage::Done(Idle::NotRouted(why)) => format!("not routed: {why}"),
            Stage::Routed => "routed".into(),
            Stage::InFlight(n) => format!("{n} in flight"),
            Stage::Unknown(why) => format!("unknown: {why}"),
        }
    }

    #[test]
    fn idle_only_once_haproxy_has_it_out_of_rotation_with_nothing_in_flight() {
        use HaproxyState::{Drain, Maint, Up};
        let cases = [
            (false, Some(Up), Some(0), "routed"),
            (true, Some(Up), Some(0), "routed"),
            (true, Some(Drain), Some(2), "2 in flight"),
            (true, Some(Drain), Some(0), "idle"),
            (true, Some(Maint), Some(0), "idle"),
            (true, Some(Drain), None, "routed"),
            (true, None, None, "idle"),
        ];
        for (drained, haproxy, in_flight, expected) in cases {
            let report = report(drained, haproxy, in_flight);
            assert_eq!(stage_of(&report, "c1"), expected, "{drained} {haproxy:?} {in_flight:?}");
        }
        let report = report(true, Some(Drain), Some(0));
        assert_eq!(stage_of(&report, "c2"), "not routed: teal leaves it out (bad label)");
        assert_eq!(
            stage_of(&report, "c3"),
            "unknown: the teal at 127.0.0.1:9180 does not route it"
        );
    }
}
