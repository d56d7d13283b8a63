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
//! | `die`, `stop`                       | process exited                 | `Stopped`     |
//! | `destroy`                           | `docker rm`                    | `Remove`      |
//! | `create`                            | `docker create`, compose       | re-inspect    |
//! | `start`, `unpause`, `pause`, `rename` | `docker start`, restart policy | re-inspect  |
//! | `health_status: *`                  | HEALTHCHECK result changed     | `Health`      |
//! | network `connect`, `disconnect`     | `docker network (dis)connect`  | re-inspect    |
//!
//! Health checks also emit `exec_*` events on every interval; the daemon-side
//! filter keeps them out.
//!
//! Swarm services are [`swarm`]'s: a second watcher, reporting tasks as
//! containers through the same channel.
//!
//! [`Client`] is the one place teal calls the Docker API: `teal run`'s
//! watchers, `--reload container:NAME` and `teal rollout` all go through
//! it, and see only our types ([`replica`] turns an inspected container
//! into the create call of its replacement).

mod client;
mod convert;
pub mod replica;
pub mod service_update;
pub mod swarm;
mod swarm_api;

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::{self, Backoff};
pub use client::{Client, Event, EventSource, Image, Inspected, Listed, RunState, Which};

use crate::model::{ContainerFacts, ContainerId, ContainerUpdate, Health};
use crate::status::{ActionLabel, Metrics, SwarmStatus};

/// What the Docker side tells the model's owner.
#[derive(Debug)]
pub enum Report {
    Connected,
    /// The session ended; the text says why. A new one follows after a backoff.
    Disconnected(String),
    /// How the Swarm side follows the swarm; `None` when the daemon is no
    /// manager (or swarm discovery is off).
    Swarm(Option<SwarmStatus>),
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
    #[error("cannot connect it to network {network}: {source}")]
    NetworkConnect {
        network: String,
        source: bollard::errors::Error,
    },
    #[error("no container {0} on this Docker host")]
    NoSuchContainer(String),
    #[error("the Docker event stream ended")]
    StreamEnded,
}

/// Connects to `host` (else `DOCKER_HOST`, else the local socket); see [`Client::connect`].
pub async fn connect(host: Option<&str>) -> Result<Client, DockerError> {
    Client::connect(host).await
}

/// Follows one daemon: sessions of list-then-events, with backoff between
/// them, until `shutdown`.
pub struct Watcher {
    pub host: Option<String>,
    pub label_prefix: String,
    pub reports: mpsc::Sender<Report>,
    pub metrics: Arc<Metrics>,
}

impl Watcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            let mut listed = false;
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = self.session(&mut listed) => ended,
            };
            if listed {
                backoff.reset();
            }
            let retry_in = backoff.next_delay();
            tracing::warn!(error = %ended, ?retry_in, "docker session ended; reconnecting");
            if self
                .reports
                .send(Report::Disconnected(ended.to_string()))
                .await
                .is_err()
            {
                return;
            }
            if !backoff::sleep(retry_in, &shutdown).await {
                return;
            }
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
        let mut labelled = Labelled::default();
        for facts in &facts {
            labelled.insert(&facts.id.0);
        }
        tracing::info!(containers = facts.len(), api = %docker.api_version(), "docker connected; listed containers");
        *listed = true;
        self.send(Report::Connected).await?;
        self.send(Report::Update(ContainerUpdate::Resync(facts))).await?;

        let mut events = docker.events(since, &["container", "network"], EVENTS);
        while let Some(event) = events.next().await {
            let Some((id, event)) = self.ours(event?, &mut labelled) else {
                continue;
            };
            tracing::debug!(container = %id, action = event.action, "docker event");
            self.metrics
                .docker_events
                .get_or_create(&ActionLabel {
                    action: action_kind(&event).to_owned(),
                })
                .inc();
            if let Some(update) = self.update(&docker, &mut networks, id, &event).await? {
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

    /// The container an event is about, when it is ours: a container event
    /// of a labelled container, or a network event (the actor is the
    /// network; the container is an attribute, its labels unknown) of a
    /// container seen labelled this session.
    fn ours(&self, event: Event, labelled: &mut Labelled) -> Option<(ContainerId, Event)> {
        let id = match event.source {
            EventSource::Container if event.attributes.contains_key(&format!("{}.service", self.label_prefix)) => {
                let id = event.actor.clone()?;
                if event.action == "destroy" {
                    labelled.remove(&id);
                } else {
                    labelled.insert(&id);
                }
                id
            }
            EventSource::Network => event
                .attributes
                .get("container")
                .filter(|id| labelled.contains(id))
                .cloned()?,
            _ => return None,
        };
        Some((ContainerId(id), event))
    }

    async fn update(
        &self,
        docker: &Client,
        networks: &mut NetworkDrivers,
        id: ContainerId,
        event: &Event,
    ) -> Result<Option<ContainerUpdate>, DockerError> {
        // The event names the new result: an inspect would add a round trip
        // to Docker (milliseconds on a busy host) before routing.
        if let Some(health) = health_of(event) {
            return Ok(Some(ContainerUpdate::Health(id, health)));
        }
        Ok(match action_kind(event) {
            "kill" if is_stop_request(event) => Some(ContainerUpdate::Drain(id)),
            // A reload request (SIGHUP, USR1...).
            "kill" => None,
            "die" | "stop" => Some(ContainerUpdate::Stopped(id)),
            "destroy" => Some(ContainerUpdate::Remove(id)),
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
    // A created compose replacement keeps its service until it starts:
    // compose v2's recreate removes the old container between the two.
    "create",
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

/// The action without its detail: `health_status: healthy` is `health_status`.
fn action_kind(event: &Event) -> &str {
    event.action.split(':').next().unwrap_or_default()
}

/// The result a `health_status: RESULT` event reports.
fn health_of(event: &Event) -> Option<Health> {
    let (kind, result) = event.action.split_once(": ")?;
    if kind != "health_status" {
        return None;
    }
    match result {
        "healthy" => Some(Health::Healthy),
        "unhealthy" => Some(Health::Unhealthy),
        "starting" => Some(Health::Starting),
        _ => None,
    }
}

/// A `kill` event with a signal that ends the process: `docker stop` began.
fn is_stop_request(event: &Event) -> bool {
    action_kind(event) == "kill"
        && event
            .attributes
            .get("signal")
            .is_some_and(|s| STOP_SIGNALS.contains(&s.as_str()))
}

/// Every running container that carries `<prefix>.service`, inspected.
pub async fn list(docker: &Client, label_prefix: &str) -> Result<Vec<ContainerFacts>, DockerError> {
    list_with(docker, label_prefix, &mut NetworkDrivers::default()).await
}

async fn list_with(
    docker: &Client,
    label_prefix: &str,
    networks: &mut NetworkDrivers,
) -> Result<Vec<ContainerFacts>, DockerError> {
    // Only the ids are kept: the listing's labels, all of them for every
    // container, would stay allocated under the facts built while they are
    // inspected (at 10,000 containers, megabytes the allocator keeps).
    let ids: Vec<String> = (docker
        .list(&[format!("{label_prefix}.service")], Which::Running)
        .await?)
        .into_iter()
        .map(|listed| listed.id)
        .collect();
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        all.extend(inspect(docker, networks, label_prefix, &id).await?);
    }
    Ok(all)
}

/// Inspects one container. `None` when it no longer exists or does not
/// carry `<prefix>.service` (network events name any container).
async fn inspect(
    docker: &Client,
    networks: &mut NetworkDrivers,
    label_prefix: &str,
    id: &str,
) -> Result<Option<ContainerFacts>, DockerError> {
    let Some(inspected) = docker.inspect(id).await? else {
        return Ok(None);
    };
    if !inspected.labels().contains_key(&format!("{label_prefix}.service")) {
        return Ok(None);
    }
    for network_id in &inspected.network_ids() {
        networks.learn(docker, network_id).await;
    }
    let mut facts = inspected.facts(|id| networks.is_overlay(id));
    // Compose alone puts ten labels on each container: at 10,000 containers
    // the ones teal never reads are megabytes kept for nothing.
    if let Some(facts) = &mut facts {
        facts.labels.retain(|key| crate::model::reads_label(label_prefix, key));
    }
    Ok(facts)
}

/// The containers seen to carry `<prefix>.service` this session (listed,
/// or named by a container event), by a hash of their id. A network event
/// of any other container is not ours, and inspecting it held up every
/// event behind it: Docker answers the inspect of a container that is
/// starting only once it has started (another container's `connect` kept
/// a `health_status` event waiting 300 ms). A collision costs an inspect,
/// never a missed event; 8 bytes a container, not its 64-byte id.
#[derive(Default)]
struct Labelled(HashSet<u64>);

impl Labelled {
    fn key(id: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        hasher.finish()
    }

    fn insert(&mut self, id: &str) {
        self.0.insert(Self::key(id));
    }

    fn remove(&mut self, id: &str) {
        self.0.remove(&Self::key(id));
    }

    fn contains(&self, id: &str) -> bool {
        self.0.contains(&Self::key(id))
    }
}

/// Network id -> whether it is an overlay; asked once per network.
#[derive(Default)]
struct NetworkDrivers(HashMap<String, bool>);

impl NetworkDrivers {
    async fn learn(&mut self, docker: &Client, id: &str) {
        if self.0.contains_key(id) {
            return;
        }
        match docker.network_driver(id).await {
            // A network that is gone counts as no overlay: its addresses are gone too.
            Ok(driver) => {
                self.0.insert(id.to_owned(), driver.as_deref() == Some("overlay"));
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

pub async fn own_container(docker: &Client, id: &str) -> Result<OwnContainer, DockerError> {
    let inspected = docker
        .inspect(id)
        .await?
        .ok_or_else(|| DockerError::NoSuchContainer(id.to_owned()))?;
    Ok(OwnContainer {
        networks: inspected.network_names(),
        project: inspected.labels().get(crate::model::COMPOSE_PROJECT_LABEL).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> Event {
        Event {
            source: EventSource::Container,
            action: action.to_owned(),
            actor: Some("a".into()),
            attributes: HashMap::new(),
        }
    }

    #[test]
    fn network_events_only_of_containers_seen_labelled() {
        let watcher = Watcher {
            host: None,
            label_prefix: "teal".into(),
            reports: mpsc::channel(1).0,
            metrics: Arc::default(),
        };
        let mut labelled = Labelled::default();
        let network = |container: &str| Event {
            source: EventSource::Network,
            action: "connect".into(),
            actor: Some("net".into()),
            attributes: HashMap::from([("container".to_owned(), container.to_owned())]),
        };
        let container = |action: &str| Event {
            attributes: HashMap::from([("teal.service".to_owned(), "web".to_owned())]),
            ..event(action)
        };
        assert!(watcher.ours(network("a"), &mut labelled).is_none());
        assert!(watcher.ours(container("create"), &mut labelled).is_some());
        assert!(watcher.ours(network("a"), &mut labelled).is_some());
        assert!(watcher.ours(network("b"), &mut labelled).is_none());
        assert!(watcher.ours(event("start"), &mut labelled).is_none());
        assert!(watcher.ours(container("destroy"), &mut labelled).is_some());
        assert!(watcher.ours(network("a"), &mut labelled).is_none());
    }

    #[test]
    fn a_health_event_names_its_result() {
        assert_eq!(health_of(&event("health_status: healthy")), Some(Health::Healthy));
        assert_eq!(health_of(&event("health_status: unhealthy")), Some(Health::Unhealthy));
        assert_eq!(health_of(&event("health_status: starting")), Some(Health::Starting));
        // Unknown results are inspected, as every other event.
        assert_eq!(health_of(&event("health_status: later")), None);
        assert_eq!(health_of(&event("start")), None);
    }
}
