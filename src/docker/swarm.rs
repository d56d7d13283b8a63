//! Swarm services, discovered on a manager.
//!
//! A service's labels (`deploy.labels` in a stack file) play the part a
//! container's labels play; each of its running tasks is a server, reached
//! at the task's address on the network it shares with teal (an overlay:
//! teal's HAProxy must run in a container attached to it, see the model).
//!
//! Docker 20.10 (API 1.41) has events for services but none for tasks, and a
//! manager sees containers of its own node only. So each session lists
//! nodes, services and tasks, then re-lists them:
//!
//! | trigger                                       | why                                   |
//! |-----------------------------------------------|---------------------------------------|
//! | service `create`, `update`, `remove`          | spec changed, an update began or ended |
//! | node `update`, `remove`                       | a node went down or came back           |
//! | a task container's `start`, `die`, `health_status`, ... (this node) | task state follows soon |
//! | a timer: 500 ms while a task is starting or being stopped, else 5 s | tasks on other nodes |
//!
//! A task container's `kill` with a stop signal drains it at once, as for a
//! plain container; so does a task Swarm wants shut down (`DesiredState`
//! no longer `running`), which covers tasks on other nodes. A task is routed
//! only once its container is healthy: this node's healthcheck result when
//! the task runs here, else the task state (`starting` until the first
//! passing check).
//!
//! A node that is lost is HAProxy's to notice first: its checks take the
//! node's tasks out of rotation within seconds, while Swarm calls the node
//! Down only after ~12 s of missed heartbeats. Once Swarm has replaced a
//! task of a node that is down, the task is left out altogether (nothing can
//! drain through an unreachable node), so no stale server stays behind.
//!
//! Each listing is sent whole as [`ContainerUpdate::SwarmResync`], which
//! replaces only what the Swarm side reported before, and as a
//! [`Report::Swarm`]: which manager teal reads, and whether its last
//! listing worked. A listing that fails (no answer while the managers elect
//! a leader, no leader at all) ends the session; what was listed stays
//! routed until a listing works again.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::swarm_api::{self, filters_query, ApiError, LocalContainer, Node, Service, Task};
use super::{action_kind, connect, is_stop_request, unix_now, Client, DockerError, Event, EventSource, Report};
use crate::backoff::{self, Backoff};
use crate::model::{ContainerFacts, ContainerId, ContainerUpdate};
use crate::settings::SwarmMode;
use crate::status::SwarmStatus;

/// Re-list this often while some task is starting or being stopped...
const FAST: Duration = Duration::from_millis(500);
/// ...and this often otherwise (tasks on other nodes send no events here).
const SLOW: Duration = Duration::from_secs(5);
/// Events come in bursts (a task's container: create, start, health...).
const COALESCE: Duration = Duration::from_millis(20);
/// How often `auto` looks again whether the daemon became a manager.
const MANAGER_RECHECK: Duration = Duration::from_secs(30);

/// Service events, and the container events that change a task's state.
const EVENTS: &[&str] = &[
    "create",
    "update",
    "remove",
    "start",
    "die",
    "kill",
    "stop",
    "destroy",
    "pause",
    "unpause",
    "health_status",
];

/// Label Swarm puts on every task's container.
const TASK_SERVICE_LABEL: &str = "com.docker.swarm.service.id";

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the daemon is not a swarm manager")]
    NotManager,
}

/// One listing: the tasks as containers, the ones Swarm is stopping, and
/// whether anything is on its way somewhere (then look again soon).
pub struct Listing {
    /// The name of the manager's own node.
    pub node: String,
    pub facts: Vec<ContainerFacts>,
    pub stopping: Vec<ContainerId>,
    pub in_flux: bool,
}

/// Follows the Swarm side of one daemon until shutdown.
pub struct SwarmWatcher {
    pub host: Option<String>,
    pub label_prefix: String,
    pub mode: SwarmMode,
    pub reports: mpsc::Sender<Report>,
}

impl SwarmWatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        if self.mode == SwarmMode::Off {
            return;
        }
        let mut backoff = Backoff::new();
        let mut was_manager = None;
        let mut following: Option<SwarmStatus> = None;
        loop {
            let mut listed = false;
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = self.session(&mut listed, &mut following) => ended,
            };
            let wait = match ended {
                SwarmError::NotManager => {
                    if was_manager != Some(false) {
                        if self.mode == SwarmMode::On {
                            tracing::warn!(
                                "--swarm is on but the daemon is not a swarm manager; checking again every 30s"
                            );
                        } else {
                            tracing::info!(
                                "the daemon is not a swarm manager: no swarm services (checking again every 30s)"
                            );
                        }
                        // Tasks of a swarm this node left are gone with it.
                        let _ = self
                            .reports
                            .send(Report::Update(ContainerUpdate::SwarmResync(Vec::new())))
                            .await;
                        let _ = self.reports.send(Report::Swarm(None)).await;
                    }
                    following = None;
                    was_manager = Some(false);
                    backoff.reset();
                    MANAGER_RECHECK
                }
                error => {
                    if listed {
                        was_manager = Some(true);
                        backoff.reset();
                    }
                    let retry_in = backoff.next_delay();
                    // Keep what was listed: a broken connection, or managers
                    // without a leader, is no news about the tasks.
                    tracing::warn!(%error, ?retry_in, "swarm session ended; reconnecting");
                    if let Some(status) = following.as_mut() {
                        status.following = false;
                        status.error = Some(error.to_string());
                        let _ = self.reports.send(Report::Swarm(Some(status.clone()))).await;
                    }
                    retry_in
                }
            };
            if !backoff::sleep(wait, &shutdown).await {
                return;
            }
        }
    }

    /// Returns only with the reason the session ended. `following` is what
    /// the last listing said (of this session or an earlier one).
    async fn session(&self, listed: &mut bool, following: &mut Option<SwarmStatus>) -> SwarmError {
        match self.session_inner(listed, following).await {
            Ok(never) => match never {},
            Err(error) => error,
        }
    }

    async fn session_inner(
        &self,
        listed: &mut bool,
        following: &mut Option<SwarmStatus>,
    ) -> Result<std::convert::Infallible, SwarmError> {
        let docker = connect(self.host.as_deref()).await?;
        let mut lister = Lister::new(docker.clone(), self.host.as_deref(), &self.label_prefix).await?;
        let since = unix_now();
        let mut listing = lister.list().await?;
        tracing::info!(
            tasks = listing.facts.len(),
            node = %listing.node,
            "swarm manager: following services labelled {}.service",
            self.label_prefix
        );
        *listed = true;
        self.send(&mut listing, following).await;

        // The action filter keeps out healthchecks' exec_* events, one per container and interval.
        let mut events = docker.events(since, &["service", "node", "container"], EVENTS);
        let mut next = Instant::now() + pace(&listing);
        loop {
            tokio::select! {
                event = events.next() => {
                    let event = event.ok_or(DockerError::StreamEnded)??;
                    match classify(&event) {
                        Trigger::Drain(id) => {
                            let _ = self.reports.send(Report::Update(ContainerUpdate::Drain(id))).await;
                            next = next.min(Instant::now() + COALESCE);
                        }
                        Trigger::Relist => next = next.min(Instant::now() + COALESCE),
                        Trigger::Nothing => {}
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    let mut listing = lister.list().await?;
                    self.send(&mut listing, following).await;
                    next = Instant::now() + pace(&listing);
                }
            }
        }
    }

    async fn send(&self, listing: &mut Listing, following: &mut Option<SwarmStatus>) {
        let status = SwarmStatus {
            node: listing.node.clone(),
            following: true,
            error: None,
            listed_at: Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        };
        let _ = self.reports.send(Report::Swarm(Some(status.clone()))).await;
        *following = Some(status);
        let facts = std::mem::take(&mut listing.facts);
        // The receiver only goes away at shutdown, which ends us first.
        let _ = self
            .reports
            .send(Report::Update(ContainerUpdate::SwarmResync(facts)))
            .await;
        for id in listing.stopping.drain(..) {
            let _ = self.reports.send(Report::Update(ContainerUpdate::Drain(id))).await;
        }
    }
}

fn pace(listing: &Listing) -> Duration {
    if listing.in_flux {
        FAST
    } else {
        SLOW
    }
}

enum Trigger {
    Drain(ContainerId),
    Relist,
    Nothing,
}

fn classify(event: &Event) -> Trigger {
    match event.source {
        // A node that goes down takes its tasks' state with it: look at once.
        EventSource::Service | EventSource::Node => Trigger::Relist,
        EventSource::Container if event.attributes.contains_key(TASK_SERVICE_LABEL) => match action_kind(event) {
            "kill" => match &event.actor {
                Some(id) if is_stop_request(event) => Trigger::Drain(ContainerId(id.clone())),
                _ => Trigger::Nothing,
            },
            // Healthchecks run on every interval; only their results matter.
            action if action.starts_with("exec_") => Trigger::Nothing,
            _ => Trigger::Relist,
        },
        _ => Trigger::Nothing,
    }
}

/// Lists once, for `teal render` and `check`: `None` when swarm discovery
/// is off, or `auto` and the daemon is no manager.
pub async fn list_once(
    docker: &Client,
    host: Option<&str>,
    label_prefix: &str,
    mode: SwarmMode,
) -> Result<Option<Vec<ContainerFacts>>, SwarmError> {
    if mode == SwarmMode::Off {
        return Ok(None);
    }
    match Lister::new(docker.clone(), host, label_prefix).await {
        Ok(mut lister) => Ok(Some(lister.list().await?.facts)),
        Err(SwarmError::NotManager) if mode == SwarmMode::Auto => Ok(None),
        Err(error) => Err(error),
    }
}

/// Reads services, tasks and this node's task containers into a [`Listing`].
struct Lister {
    docker: Client,
    host: String,
    version: String,
    label_prefix: String,
    node_id: String,
    /// Image -> its exposed TCP ports, for tasks on other nodes.
    image_ports: HashMap<String, Vec<u16>>,
}

impl Lister {
    /// Fails with `NotManager` unless the daemon is an active manager.
    async fn new(docker: Client, host: Option<&str>, label_prefix: &str) -> Result<Self, SwarmError> {
        let node = docker.swarm_node().await?;
        if !node.manager {
            return Err(SwarmError::NotManager);
        }
        Ok(Self {
            host: resolve_host(host),
            version: docker.api_version(),
            label_prefix: label_prefix.to_owned(),
            node_id: node.node_id,
            image_ports: HashMap::new(),
            docker,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, SwarmError> {
        swarm_api::get(&self.host, &self.version, path).await.map_err(|error| {
            if error.not_a_manager() {
                SwarmError::NotManager
            } else {
                error.into()
            }
        })
    }

    async fn list(&mut self) -> Result<Listing, SwarmError> {
        let nodes: Vec<Node> = self.get("/nodes").await?;
        let nodes: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let label = format!("{}.service", self.label_prefix);
        let services: Vec<Service> = self
            .get(&format!(
                "/services{}",
                filters_query(&HashMap::from([("label", vec![label])]))
            ))
            .await?;
        let mut listing = Listing {
            node: nodes
                .get(self.node_id.as_str())
                .map_or(&self.node_id[..], |n| n.name())
                .to_owned(),
            facts: Vec::new(),
            stopping: Vec::new(),
            in_flux: services.iter().any(|s| {
                s.update_status
                    .as_ref()
                    .is_some_and(|u| matches!(u.state.as_str(), "updating" | "rollback_started"))
            }),
        };
        if services.is_empty() {
            return Ok(listing);
        }
        let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
        let tasks: Vec<Task> = self
            .get(&format!("/tasks{}", filters_query(&HashMap::from([("service", ids)]))))
            .await?;
        let by_id: HashMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
        for task in &tasks {
            let node = nodes.get(task.node_id.as_str()).copied();
            if task.abandoned(node) {
                continue;
            }
            // A task on a node that is down moves on only once the node is
            // back, and its node event makes teal look again then.
            listing.in_flux |= node.is_some_and(Node::ready) && task.in_flux();
            let (Some(service), Some(container_id)) = (by_id.get(task.service_id.as_str()), task.container_id()) else {
                continue;
            };
            if !task.container_runs() {
                continue;
            }
            let local = if task.node_id == self.node_id {
                match self.local_container(container_id).await? {
                    Some(local) => Some(local),
                    // Its container has already exited: the task state lags behind.
                    None => continue,
                }
            } else {
                None
            };
            let image_ports = match local {
                Some(_) => Vec::new(),
                None => self.image_ports(task.image(service)).await,
            };
            if let Some(facts) = swarm_api::task_facts(service, task, node, local.as_ref(), &image_ports) {
                if task.stopping() {
                    listing.stopping.push(facts.id.clone());
                }
                listing.facts.push(facts);
            }
        }
        Ok(listing)
    }

    /// This node's view of a task's container; `None` when it does not run.
    async fn local_container(&self, id: &str) -> Result<Option<LocalContainer>, SwarmError> {
        let Some(inspected) = self.docker.inspect(id).await? else {
            return Ok(None);
        };
        Ok(inspected
            .facts(|_| true)
            .filter(|facts| facts.running)
            .map(|facts| LocalContainer {
                health: facts.health,
                paused: facts.paused,
                exposed_tcp_ports: facts.exposed_tcp_ports,
            }))
    }

    /// The image's exposed TCP ports, if this daemon has the image.
    async fn image_ports(&mut self, image: &str) -> Vec<u16> {
        if let Some(ports) = self.image_ports.get(image) {
            return ports.clone();
        }
        let ports = match self.docker.image(image).await {
            Ok(Some(image)) => image.exposed_tcp_ports(),
            Ok(None) | Err(_) => Vec::new(),
        };
        self.image_ports.insert(image.to_owned(), ports.clone());
        ports
    }
}

/// The daemon address, as `connect` picks it.
pub(super) fn resolve_host(host: Option<&str>) -> String {
    host.map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: EventSource, action: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            source,
            action: action.to_owned(),
            actor: Some("c1".into()),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn events_that_matter() {
        use EventSource::{Container as CONTAINER, Node as NODE, Service as SERVICE};
        let task = (TASK_SERVICE_LABEL, "svc1");
        assert!(matches!(classify(&event(SERVICE, "update", &[])), Trigger::Relist));
        let down = [("state.old", "ready"), ("state.new", "down")];
        assert!(matches!(classify(&event(NODE, "update", &down)), Trigger::Relist));
        assert!(matches!(
            classify(&event(CONTAINER, "kill", &[task, ("signal", "15")])),
            Trigger::Drain(id) if id.0 == "c1"
        ));
        assert!(matches!(
            classify(&event(CONTAINER, "kill", &[task, ("signal", "1")])),
            Trigger::Nothing
        ));
        assert!(matches!(
            classify(&event(CONTAINER, "health_status: healthy", &[task])),
            Trigger::Relist
        ));
        assert!(matches!(
            classify(&event(CONTAINER, "exec_start: sh -c true", &[task])),
            Trigger::Nothing
        ));
        // A plain container is the other watcher's business.
        assert!(matches!(classify(&event(CONTAINER, "die", &[])), Trigger::Nothing));
    }

    #[test]
    fn host_defaults_like_connect() {
        assert_eq!(resolve_host(Some("tcp://127.0.0.1:2375")), "tcp://127.0.0.1:2375");
    }
}
