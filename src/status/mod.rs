//! What teal sees and did, for operators: `/healthz`, `/status`, `/metrics`
//! on `--status-bind`, and `teal status` which reads `/status` back.
//!
//! The server only reads: snapshots, Docker's connection and the last apply
//! arrive on watch channels from the tasks that own them; HAProxy's own view
//! of each server is asked of its admin socket per request.

mod client;
mod metrics;
mod report;
mod table;

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

pub use client::fetch;
pub use metrics::{ActionLabel, Metrics, ResultLabel};
pub use report::{
    parse_servers_state, ApplyRecord, DockerStatus, ExcludedStatus, HaproxyStates, ServerStatus, ServiceStatus,
    StatusReport,
};
pub use table::print_table;

/// Read handles on the state other tasks own.
#[derive(Clone)]
pub struct StatusSources {
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    pub docker: watch::Receiver<DockerStatus>,
    pub last_apply: watch::Receiver<Option<ApplyRecord>>,
    pub metrics: Arc<Metrics>,
    pub admin_socket: PathBuf,
}

impl StatusSources {
    async fn haproxy_states(&self) -> Option<HaproxyStates> {
        let answer = admin_command(&self.admin_socket, "show servers state").await.ok()?;
        Some(parse_servers_state(&answer))
    }

    pub async fn report(&self) -> StatusReport {
        let snapshot = self.snapshots.borrow().clone().unwrap_or_default();
        let docker = self.docker.borrow().clone();
        let last_reload = self.last_apply.borrow().clone();
        StatusReport::new(&snapshot, docker, self.haproxy_states().await.as_ref(), last_reload)
    }
}

/// Serves until `shutdown`. A bind failure is returned at once.
pub async fn serve(
    bind: std::net::SocketAddr,
    sources: StatusSources,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --status-bind {bind}: {e}"))?;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(sources);
    tracing::info!(%bind, "status endpoint listening");
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "status endpoint failed");
        }
    }))
}

async fn healthz(State(sources): State<StatusSources>) -> Response {
    let docker = sources.docker.borrow().connected;
    let haproxy = admin_command(&sources.admin_socket, "show info").await.is_ok();
    let body = format!("docker: {}\nhaproxy: {}\n", up(docker), up(haproxy));
    let code = if docker && haproxy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        sources.metrics.encode(),
    )
        .into_response()
}
