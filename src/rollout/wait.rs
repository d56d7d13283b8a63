//! Waiting for replacements: healthy in Docker, then UP in HAProxy as the
//! running daemon's `/status` reports it. Any replacement that exits, turns
//! unhealthy, is left out by teal or is late ends the wait with the reason.
//!
//! HAProxy (2.6) reports a server UP before its first check has run: a
//! server added at runtime leaves maintenance UP, and so does one new in a
//! reloaded config. A failed check is followed by two more 100 ms apart
//! (`fall 3 fastinter 100ms`), which take it DOWN. So UP counts only once it
//! has held for a check interval plus a margin for those checks: by then a
//! check has passed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::progress::{seconds, Progress};
use crate::docker::Client;
use crate::model::{Health, ServerState};
use crate::status::{self, StatusReport};

const POLL: Duration = Duration::from_millis(250);

/// A replacement, as the rollout tracks it.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub id: String,
    pub name: String,
    /// Index of the old container it replaces.
    pub replaces: usize,
    /// Started and ready in teal at some point: it may have served, so it
    /// is stopped gracefully on rollback.
    pub routed: bool,
    /// How long UP must hold to prove a passed check (see above).
    pub settle: Duration,
    /// Since when HAProxy has said UP, without a break.
    pub up_since: Option<Instant>,
    pub up: bool,
}

/// Where one replacement stands.
enum Stage {
    Waiting(String),
    Up,
    Failed(String),
}

/// Returns when every replacement is UP; `Err` says which one failed and why.
pub async fn until_up(
    docker: &Client,
    status_addr: SocketAddr,
    state_dir: &std::path::Path,
    replacements: &mut [Replacement],
    timeout: Duration,
    interrupted: &CancellationToken,
) -> Result<(), String> {
    let started = Instant::now();
    let mut progress = Progress::new(replacements.iter().map(|r| r.name.clone()).collect());
    let mut last: Vec<String> = vec![String::new(); replacements.len()];
    let result = loop {
        let report = status::fetch(status_addr, state_dir).await;
        let mut failure = None;
        for (i, r) in replacements.iter_mut().enumerate() {
            if r.up {
                continue;
            }
            let stage = stage(docker, r, &report).await;
            if !matches!(stage, Stage::Up) {
                r.up_since = None;
            }
            match stage {
                Stage::Up => {
                    let since = *r.up_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= r.settle {
                        r.up = true;
                        progress.update(i, "UP in HAProxy, checks passing", started.elapsed());
                    } else {
                        let what = "UP in HAProxy, awaiting a passed check".to_owned();
                        progress.update(i, &what, started.elapsed());
                        last[i] = what;
                    }
                }
                Stage::Waiting(what) => {
                    progress.update(i, &what, started.elapsed());
                    last[i] = what;
                }
                Stage::Failed(why) => {
                    progress.update(i, "FAILED", started.elapsed());
                    failure.get_or_insert(format!("{}: {why}", r.name));
                }
            }
        }
        if let Some(failure) = failure {
            break Err(failure);
        }
        if replacements.iter().all(|r| r.up) {
            break Ok(());
        }
        if started.elapsed() >= timeout {
            let late: Vec<String> = replacements
                .iter()
                .zip(&last)
                .filter(|(r, _)| !r.up)
                .map(|(r, last)| format!("{} ({last})", r.name))
                .collect();
            break Err(format!(
                "not UP in HAProxy within {}: {}",
                seconds(timeout),
                late.join(", ")
            ));
        }
        tokio::select! {
            _ = interrupted.cancelled() => break Err("interrupted".to_owned()),
            _ = tokio::time::sleep(POLL) => {}
        }
    };
    progress.finish();
    result
}

async fn stage(docker: &Client, r: &mut Replacement, report: &anyhow::Result<StatusReport>) -> Stage {
    let state = match docker.inspect(&r.id).await {
        Ok(Some(inspected)) => inspected.state(),
        Ok(None) => return Stage::Failed("it was removed (not by this rollout)".into()),
        Err(error) => return Stage::Failed(format!("cannot inspect it: {error}")),
    };
    if state.restarting || !state.running {
        let verb = if state.restarting { "keeps restarting" } else { "exited" };
        return Stage::Failed(format!(
            "{verb} (exit code {}){}",
            state.exit_code,
            log_tail(docker, &r.id).await
        ));
    }
    match state.health {
        Health::Unhealthy => {
            let output = state
                .last_check_output
                .map(|o| format!("; last check said: {o}"))
                .unwrap_or_default();
            return Stage::Failed(format!("turned unhealthy in Docker{output}"));
        }
        Health::Starting => return Stage::Waiting("health: starting".into()),
        Health::Healthy | Health::None => {}
    }
    let report = match report {
        Ok(report) => report,
        Err(error) => return Stage::Waiting(format!("status endpoint: {error:#}")),
    };
    if let Some(excluded) = report.excluded.iter().find(|e| e.container_id == r.id) {
        return Stage::Failed(format!("teal leaves it out: {}", excluded.reason));
    }
    let server = report
        .services
        .iter()
        .flat_map(|s| s.servers.iter())
        .find(|s| s.container_id == r.id);
    let Some(server) = server else {
        return Stage::Waiting("not routed by teal yet".into());
    };
    if server.state == ServerState::Ready {
        r.routed = true;
    }
    if server.is_up() {
        return Stage::Up;
    }
    let haproxy = server.haproxy.map_or_else(|| "-".to_owned(), |h| h.to_string());
    let reason = server.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    Stage::Waiting(format!("teal: {}{reason}, HAProxy: {haproxy}", server.state))
}

/// The last lines the container printed, to say why it exited.
async fn log_tail(docker: &Client, id: &str) -> String {
    let lines: Vec<String> = docker
        .log_tail(id, 5)
        .await
        .iter()
        .map(|l| format!("\n    | {l}"))
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output:{}", lines.concat())
    }
}
