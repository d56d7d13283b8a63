//! The Docker side: connect, list, follow events, reconnect.
//!
//! Each session lists the running containers, then reads events *since the
//! listing time*, so nothing that happens in between is missed. When the
//! stream breaks or the daemon restarts, the next session lists afresh
//! (the daemon replays only its last 256 events, so replay is not relied on).
//!
//! | event                               | cause                          | update        |
//! |-------------------------------------|--------------------------------|---------------|
//! | `kill` with TERM, INT, QUIT or KILL | `docker stop`, `docker kill`   | `Drain`       |
//! | `die`, `stop`, `destroy`            | process exited, removed        | `Remove`      |
//! | `start`, `unpause`, `pause`, `rename` | `docker start`, restart policy | re-inspect  |
//! | `health_status: *`                  | HEALTHCHECK result changed     | re-inspect    |
//! | network `connect`, `disconnect`     | `docker network (dis)connect`  | re-inspect    |
//!
//! Health checks also emit `exec_*` events on every interval; the daemon-side
//! filter keeps them out.
//!
//! Swarm services are [`swarm`]'s: a second watcher, reporting tasks as
//! containers through the same channel.

mod convert;
pub mod swarm;
mod swarm_api;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{ContainerFacts, ContainerId, ContainerUpdate};
use crate::status::{ActionLabel, Metrics};

/// What the Docker side tells the model's owner.
#[derive(Debug)]
pub enum Report {
    Connected,
    /// The session ended; the text says why. A new one follows after a backoff.
    Disconnected(String),
    Update(ContainerUpdate),
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker daemon at {host}: {source} (is dockerd running? set --docker-host or DOCKER_HOST)"
    )]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("Docker API call failed: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("the Docker event stream ended")]
    StreamEnded,
}

/// Connects to `host` (else `DOCKER_HOST`, else the local socket) and
/// negotiates the API version, so daemons as old as API 1.41 work.
pub async fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let shown = host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let connect_error = |source| DockerError::Connect {
        host: shown.clone(),
        source,
    };
    let docker = match host {
        Some(host) => Docker::connect_with_host(host),
        None => Docker::connect_with_defaults(),
    }
    .map_err(connect_error)?;
    docker.negotiate_version().await.map_err(connect_error)
}

/// Follows one daemon: sessions of list-then-events, with backoff between
/// them, until `shutdown`.
pub struct Watcher {
    pub host: Option<String>,
    pub label_prefix: String,
    pub reports: mpsc::Sender<Report>,
    pub metrics: Arc<Metrics>,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Watcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let mut listed = false;
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = self.session(&mut listed) => ended,
            };
            if listed {
                backoff = BACKOFF_FIRST;
            }
            tracing::warn!(error = %ended, retry_in = ?backoff, "docker session ended; reconnecting");
            if self
                .reports
                .send(Report::Disconnected(ended.to_string()))
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Returns only with the reason the session ended.
    async fn session(&self, listed: &mut bool) -> DockerError {
        match self.session_inner(listed).await {
            Ok(never) => match never {},
            Err(error) => error,
        }
    }

    async fn session_inner(&self, listed: &mut bool) -> Result<std::convert::Infallible, DockerError> {
        let docker = connect(self.host.as_deref()).await?;
        let mut networks = NetworkDrivers::default();
        let since = unix_now();
        let facts = list_with(&docker, &self.label_prefix, &mut networks).await?;
        tracing::info!(containers = facts.len(), api = %docker.client_version(), "docker connected; listed containers");
        *listed = true;
        self.send(Report::Connected).await?;
        self.send(Report::Update(ContainerUpdate::Resync(facts))).await?;

        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned(), "network".to_owned()]),
                ("event".to_owned(), EVENTS.iter().map(|e| e.to_string()).collect()),
            ])),
        };
        let mut events = docker.events(Some(options));
        while let Some(event) = events.next().await {
            if let Some(update) = self.handle(&docker, &mut networks, event?).await? {
                self.send(Report::Update(update)).await?;
            }
        }
        Err(DockerError::StreamEnded)
    }

    async fn send(&self, report: Report) -> Result<(), DockerError> {
        // The receiver only goes away at shutdown; the select in `run` ends us first.
        let _ = self.reports.send(report).await;
        Ok(())
    }

    async fn handle(
        &self,
        docker: &Docker,
        networks: &mut NetworkDrivers,
        event: EventMessage,
    ) -> Result<Option<ContainerUpdate>, DockerError> {
        let action = event.action.unwrap_or_default();
        let attributes = event
            .actor
            .as_ref()
            .and_then(|a| a.attributes.clone())
            .unwrap_or_default();
        let id = match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                if !attributes.contains_key(&format!("{}.service", self.label_prefix)) {
                    return Ok(None);
                }
                event.actor.and_then(|a| a.id)
            }
            // The actor is the network; the container is an attribute.
            Some(EventMessageTypeEnum::NETWORK) => attributes.get("container").cloned(),
            _ => None,
        };
        let Some(id) = id else { return Ok(None) };
        let id = ContainerId(id);
        tracing::debug!(container = %id, action, "docker event");
        // `health_status: healthy` and the like: the action is the part before ':'.
        let kind = action.split(':').next().unwrap_or_default().to_owned();
        self.metrics
            .docker_events
            .get_or_create(&ActionLabel { action: kind.clone() })
            .inc();
        Ok(match kind.as_str() {
            "kill"
                if attributes
                    .get("signal")
                    .is_some_and(|s| STOP_SIGNALS.contains(&s.as_str())) =>
            {
                Some(ContainerUpdate::Drain(id))
            }
            "kill" => None,
            "die" | "stop" | "destroy" => Some(ContainerUpdate::Remove(id)),
            // Gone, or not ours (a network event about any container): a
            // Remove of an id the model does not know changes nothing.
            _ => match inspect(docker, networks, &self.label_prefix, &id.0).await? {
                Some(facts) => Some(ContainerUpdate::Upsert(facts)),
                None => Some(ContainerUpdate::Remove(id)),
            },
        })
    }
}

const EVENTS: &[&str] = &[
    "start",
    "die",
    "stop",
    "kill",
    "pause",
    "unpause",
    "health_status",
    "destroy",
    "rename",
    "connect",
    "disconnect",
];

/// Signals that end the process (numbers as Docker reports them): SIGINT,
/// SIGQUIT, SIGKILL, SIGTERM. Others (HUP, USR1...) are reload requests.
const STOP_SIGNALS: &[&str] = &["2", "3", "9", "15", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM"];

/// Every running container that carries `<prefix>.service`, inspected.
pub async fn list(docker: &Docker, label_prefix: &str) -> Result<Vec<ContainerFacts>, DockerError> {
    list_with(docker, label_prefix, &mut NetworkDrivers::default()).await
}

async fn list_with(
    docker: &Docker,
    label_prefix: &str,
    networks: &mut NetworkDrivers,
) -> Result<Vec<ContainerFacts>, DockerError> {
    let options = ListContainersOptions {
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{label_prefix}.service")],
        )])),
        ..Default::default()
    };
    let mut all = Vec::new();
    for summary in docker.list_containers(Some(options)).await? {
        if let Some(id) = summary.id {
            all.extend(inspect(docker, networks, label_prefix, &id).await?);
        }
    }
    Ok(all)
}

/// Inspects one container. `None` when it no longer exists or does not
/// carry `<prefix>.service` (network events name any container).
async fn inspect(
    docker: &Docker,
    networks: &mut NetworkDrivers,
    label_prefix: &str,
    id: &str,
) -> Result<Option<ContainerFacts>, DockerError> {
    let inspect = match docker.inspect_container(id, None).await {
        Ok(inspect) => inspect,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let service_label = format!("{label_prefix}.service");
    let ours = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|labels| labels.contains_key(&service_label));
    if !ours {
        return Ok(None);
    }
    let network_ids: Vec<String> = inspect
        .network_settings
        .iter()
        .flat_map(|n| n.networks.iter().flatten())
        .filter_map(|(_, endpoint)| endpoint.network_id.clone())
        .collect();
    for network_id in &network_ids {
        networks.learn(docker, network_id).await;
    }
    Ok(convert::container_facts(inspect, |id| networks.is_overlay(id)))
}

/// Network id -> whether it is an overlay; asked once per network.
#[derive(Default)]
struct NetworkDrivers(HashMap<String, bool>);

impl NetworkDrivers {
    async fn learn(&mut self, docker: &Docker, id: &str) {
        if self.0.contains_key(id) {
            return;
        }
        match docker.inspect_network(id, None).await {
            Ok(network) => {
                self.0
                    .insert(id.to_owned(), network.driver.as_deref() == Some("overlay"));
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                self.0.insert(id.to_owned(), false);
            }
            // Not cached: asked again at the container's next inspect.
            Err(error) => {
                tracing::warn!(network = id, %error, "cannot inspect network; its addresses are treated as unreachable")
            }
        }
    }

    /// Unknown networks count as overlays: an address teal cannot vouch for
    /// is never rendered.
    fn is_overlay(&self, id: &str) -> bool {
        self.0.get(id).copied().unwrap_or(true)
    }
}

/// Unix time with nanoseconds, as the events API's `since` takes it.
fn unix_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The container teal runs in, if any: found through the mount Docker makes
/// for `/etc/hostname`, which names the container's id.
pub fn own_container_id() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let rest = &line[line.find("/containers/")? + "/containers/".len()..];
        let id = rest.get(..64)?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && rest[64..].starts_with("/hostname")).then(|| id.to_owned())
    })
}

/// Networks and compose project of the container teal runs in.
pub struct OwnContainer {
    pub networks: Vec<String>,
    pub project: Option<String>,
}

pub async fn own_container(docker: &Docker, id: &str) -> Result<OwnContainer, DockerError> {
    let inspect = docker.inspect_container(id, None).await?;
    let project = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(crate::model::COMPOSE_PROJECT_LABEL).cloned());
    let networks = inspect
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    Ok(OwnContainer { networks, project })
}
