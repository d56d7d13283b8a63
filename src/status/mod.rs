//! What teal sees and did, for operators: the dashboard at `/`,
//! `/healthz`, `/readyz`, `/status`, `/metrics` on `--status-bind`, and
//! `teal status` which reads `/status` back.
//!
//! The server only reads: snapshots, Docker's connection, the last apply and
//! the supervised HAProxy arrive on watch channels from the tasks that own
//! them (a closed channel means its task has ended); HAProxy's own view of
//! each server is asked of its admin socket per request.

mod auth;
mod client;
mod dashboard;
mod held;
mod history;
mod metrics;
mod report;
mod server_stats;
mod table;
mod traffic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::admin_command;
use crate::model::Snapshot;

pub use auth::{token_path, AuthFileError, StatusUsers};
pub use client::fetch;
pub use held::{parse_held, HeldRequests};
pub use metrics::{ActionLabel, Metrics, ResultLabel};
pub use report::{
    parse_servers_state, ApplyRecord, DockerStatus, ExcludedStatus, HaproxyExit, HaproxyProcess, HaproxyState,
    HaproxyStates, ServerStatus, ServiceStatus, StatusReport, SwarmStatus,
};
pub use server_stats::ServerCounters;
pub use table::print_table;

/// The hold's own config-only server in every http backend: not a
/// container, so never read from HAProxy's per-server answers.
const HOLD_SERVER: &str = "teal_hold";

/// Read handles on the state other tasks own.
#[derive(Clone)]
pub struct StatusSources {
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    pub docker: watch::Receiver<DockerStatus>,
    pub last_apply: watch::Receiver<Option<ApplyRecord>>,
    pub metrics: Arc<Metrics>,
    pub admin_socket: PathBuf,
    /// `--reload supervise`: the master the supervisor watches.
    pub haproxy: Option<watch::Receiver<HaproxyProcess>>,
    /// What HAProxy refused, from the reconcile driver.
    pub refused: watch::Receiver<crate::isolate::Refusals>,
    /// ACME's certificates, from its task (empty without ACME).
    pub certificates: watch::Receiver<Vec<crate::acme::CertificateStatus>>,
    /// `--certs`: its files are read at each request.
    pub certs_dir: Option<PathBuf>,
    /// Where `teal rollout` and `teal switch` keep their reports.
    pub state_dir: PathBuf,
}

impl StatusSources {
    async fn haproxy_states(&self) -> Option<HaproxyStates> {
        let answer = admin_command(&self.admin_socket, "show servers state").await.ok()?;
        Some(parse_servers_state(&answer))
    }

    async fn server_stats(&self) -> Option<server_stats::Stats> {
        let answer = admin_command(&self.admin_socket, server_stats::COMMAND).await.ok()?;
        Some(server_stats::parse_show_stat(&answer))
    }

    /// The hold script's counts, by backend; `None` when HAProxy does not answer.
    async fn held_requests(&self) -> Option<HashMap<String, HeldRequests>> {
        let answer = admin_command(&self.admin_socket, "teal held").await.ok()?;
        Some(parse_held(&answer))
    }

    /// The deploys the commands recorded; none (and a warning) when the
    /// file cannot be read.
    fn deploys(&self) -> crate::deploy::record::Deploys {
        crate::deploy::record::load(&self.state_dir).unwrap_or_else(|error| {
            tracing::warn!(%error, "recent deploys left out of /status and /metrics");
            Default::default()
        })
    }

    pub async fn report(&self) -> StatusReport {
        let snapshot = self.snapshots.borrow().clone().unwrap_or_default();
        let docker = self.docker.borrow().clone();
        let last_reload = self.last_apply.borrow().clone();
        let refused = self.refused.borrow().clone();
        let snapshot = crate::isolate::as_served(&snapshot, &refused);
        let mut report = StatusReport::new(&snapshot, docker, self.haproxy_states().await.as_ref(), last_reload);
        report.haproxy = self.haproxy.as_ref().map(|h| h.borrow().clone());
        report.refused = refused;
        if let Some(stats) = self.server_stats().await {
            for service in &mut report.services {
                for server in &mut service.servers {
                    let line = stats.get(&(service.name.clone(), server.name.clone()));
                    server.in_flight = line.map(|l| l.in_flight);
                    server.counters = line.map(|l| l.counters);
                }
            }
        }
        report.certificates = self.all_certificates(&report.refused);
        report.deploys = self.deploys().recent;
        if let Some(held) = self.held_requests().await {
            for service in report
                .services
                .iter_mut()
                .filter(|s| s.mode == crate::model::labels::Mode::Http)
            {
                service.held = Some(held.get(&service.name).copied().unwrap_or_default());
            }
        }
        report
    }

    /// The files of `--certs` (with HAProxy's refusals), then ACME's.
    fn all_certificates(&self, refused: &crate::isolate::Refusals) -> Vec<crate::acme::CertificateStatus> {
        let mut all = Vec::new();
        if let Some(files) = self.certs_dir.as_deref().and_then(|dir| crate::tls::scan(dir).ok()) {
            for (file, pem) in files {
                let reason = refused
                    .certificates
                    .iter()
                    .find(|r| r.file == file)
                    .map(|r| r.reason.as_str());
                all.push(crate::acme::CertificateStatus::of_file(&file, &pem, reason));
            }
        }
        all.extend(self.certificates.borrow().iter().cloned());
        all
    }

    /// Whether HAProxy serves: the supervised master runs, or (other reload
    /// modes) the admin socket answers.
    async fn haproxy_serving(&self) -> bool {
        match &self.haproxy {
            Some(process) => process.borrow().running,
            None => admin_command(&self.admin_socket, "show info").await.is_ok(),
        }
    }

    /// The tasks that feed this server are still running.
    fn loops_alive(&self) -> bool {
        self.docker.has_changed().is_ok()
            && self.last_apply.has_changed().is_ok()
            && self.haproxy.as_ref().is_none_or(|h| h.has_changed().is_ok())
    }
}

/// The status listener's settings.
pub struct Listener<'a> {
    pub bind: std::net::SocketAddr,
    /// `--status-auth`: who may look (all but `/healthz` and `/readyz`).
    pub users: Option<StatusUsers>,
    /// Where the token for teal's own commands goes.
    pub state_dir: &'a std::path::Path,
}

/// Serves until `shutdown`. A bind failure is returned at once.
pub async fn serve(
    listener: Listener<'_>,
    sources: StatusSources,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let bind = listener.bind;
    let tcp = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --status-bind {bind}: {e}"))?;
    let auth = match listener.users {
        Some(users) => Some(
            auth::StatusAuth::start(users, listener.state_dir)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", auth::token_path(listener.state_dir).display()))?,
        ),
        None => {
            auth::StatusAuth::remove_token(listener.state_dir);
            None
        }
    };
    let (dashboard, feed) = dashboard::routes(sources.clone(), shutdown.clone());
    // Probes need no credentials: these say only ok or down.
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(sources.clone());
    let mut guarded = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(sources)
        .merge(dashboard);
    if let Some(auth) = auth {
        guarded = guarded.layer(axum::middleware::from_fn_with_state(auth, auth::require));
    }
    let router = probes.merge(guarded);
    tracing::info!(%bind, "status endpoint listening");
    Ok(tokio::spawn(async move {
        // The dashboard's event streams end when its feed does, so the
        // graceful shutdown does not wait on open browsers.
        let server = axum::serve(tcp, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "status endpoint failed");
        }
        let _ = feed.await;
    }))
}

/// Liveness: teal's loops run and HAProxy serves. Docker is left out on
/// purpose: restarting teal does not bring a daemon back.
async fn healthz(State(sources): State<StatusSources>) -> Response {
    let loops = sources.loops_alive();
    let haproxy = sources.haproxy_serving().await;
    let body = format!("loops: {}\nhaproxy: {}\n", up(loops), up(haproxy));
    (code(loops && haproxy), body).into_response()
}

/// Readiness: Docker reachable and HAProxy runs the config of what teal
/// last saw (less what it refused and left out), so new deploys are routed.
async fn readyz(State(sources): State<StatusSources>) -> Response {
    let docker = sources.docker.borrow().connected;
    let (in_step, config) = match (&*sources.snapshots.borrow(), &*sources.last_apply.borrow()) {
        (None, _) | (_, None) => (false, "waiting for the first config"),
        (Some(_), Some(apply)) if apply.ok => (true, "ok"),
        // One bad service or edit left out is not teal out of step: an
        // orchestrator acting on it would take every service down.
        (Some(_), Some(apply)) if apply.left_out => (true, "ok (a refusal is left out, see /status)"),
        (Some(_), Some(_)) => (false, "last apply failed"),
    };
    let haproxy = sources.haproxy_serving().await;
    let body = format!("docker: {}\nconfig: {config}\nhaproxy: {}\n", up(docker), up(haproxy));
    (code(docker && in_step && haproxy), body).into_response()
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn up(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "down"
    }
}

async fn status(State(sources): State<StatusSources>) -> Json<StatusReport> {
    Json(sources.report().await)
}

async fn metrics(State(sources): State<StatusSources>) -> Response {
    if let Some(held) = sources.held_requests().await {
        sources.metrics.observe_held(&held);
    }
    sources.metrics.observe_deploys(&sources.deploys());
    let certificates = sources.all_certificates(&sources.refused.borrow().clone());
    sources
        .metrics
        .observe_certificates(&certificates, std::time::SystemTime::now());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        sources.metrics.encode(),
    )
        .into_response()
}
