//! The Docker API as teal uses it: a small facade over bollard, the one
//! place teal calls it. Answers come back as our own types, or as opaque
//! wrappers ([`Inspected`], [`Image`]) that only `src/docker/` opens.
//! "No such container" is `Ok(None)`, or `Ok(())` where the caller's
//! intent is met by it (stop, remove), never an error to match on.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, ImageConfig, LocalNodeState, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, InspectNetworkOptions, KillContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use futures::{Stream, StreamExt};

use super::convert;
use super::replica::Plan;
use super::DockerError;
use crate::model::{ContainerFacts, Health};

/// A connection to one daemon, its API version negotiated.
#[derive(Clone)]
pub struct Client {
    api: bollard::Docker,
}

/// Which containers [`Client::list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Running and paused ones, as `docker ps`.
    Running,
    /// Stopped ones too, as `docker ps -a`.
    All,
}

/// One container of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// One container as the daemon describes it. Its whole description is
/// kept so that a replacement can be created from it ([`super::replica`]).
#[derive(Debug, Clone)]
pub struct Inspected {
    pub(super) raw: ContainerInspectResponse,
    labels: HashMap<String, String>,
}

/// Whether a container runs, and how its HEALTHCHECK goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub running: bool,
    pub restarting: bool,
    pub exit_code: i64,
    pub health: Health,
    /// What the last health check printed, trimmed; `None` when empty.
    pub last_check_output: Option<String>,
}

/// An image's configuration (its env, CMD, labels, exposed ports...).
#[derive(Debug, Clone, Default)]
pub struct Image(pub(super) ImageConfig);

/// A Docker event, out of bollard's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub source: EventSource,
    /// As Docker says it: `start`, `health_status: healthy`...
    pub action: String,
    /// The container, network or service the event is about.
    pub actor: Option<String>,
    pub attributes: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    Container,
    Network,
    Service,
    /// A swarm node joined, left, or changed state (`ready`, `down`...).
    Node,
    Other,
}

/// What the daemon says of its place in a swarm.
pub struct SwarmNode {
    /// An active manager: it can list services and tasks.
    pub manager: bool,
    pub node_id: String,
}

/// The daemon answered 404: no such container, image or network.
fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// `Ok(None)` for a 404.
fn found<T>(result: Result<T, bollard::errors::Error>) -> Result<Option<T>, DockerError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

impl Client {
    /// Connects to `host` (else `DOCKER_HOST`, else the local socket) and
    /// negotiates the API version, so daemons as old as API 1.41 work.
    pub async fn connect(host: Option<&str>) -> Result<Self, DockerError> {
        let shown = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let connect_error = |source| DockerError::Connect {
            host: shown.clone(),
            source,
        };
        let api = match host {
            Some(host) => bollard::Docker::connect_with_host(host),
            None => bollard::Docker::connect_with_defaults(),
        }
        .map_err(connect_error)?;
        let api = api.negotiate_version().await.map_err(connect_error)?;
        Ok(Self { api })
    }

    /// How long one call may take before the client gives up.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            api: self.api.with_timeout(timeout),
        }
    }

    /// The negotiated API version, `1.41` and the like.
    pub fn api_version(&self) -> String {
        let version = self.api.client_version();
        format!("{}.{}", version.major_version, version.minor_version)
    }

    /// The containers that carry every label of `labels` (`key` or `key=value`).
    pub async fn list(&self, labels: &[String], which: Which) -> Result<Vec<Listed>, DockerError> {
        let options = ListContainersOptions {
            all: which == Which::All,
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
            ..Default::default()
        };
        let listed = self.api.list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|summary| {
                Some(Listed {
                    id: summary.id?,
                    labels: summary.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// `None` when the container no longer exists.
    pub async fn inspect(&self, id: &str) -> Result<Option<Inspected>, DockerError> {
        let raw = found(self.api.inspect_container(id, None::<InspectContainerOptions>).await)?;
        Ok(raw.map(Inspected::new))
    }

    /// The network's driver (`bridge`, `overlay`...); `None` when it no longer exists.
    pub async fn network_driver(&self, id: &str) -> Result<Option<String>, DockerError> {
        let network = found(self.api.inspect_network(id, None::<InspectNetworkOptions>).await)?;
        Ok(network.map(|n| n.driver.unwrap_or_default()))
    }

    /// `None` when the daemon does not have the image (teal never pulls).
    pub async fn image(&self, reference: &str) -> Result<Option<Image>, DockerError> {
        let image = found(self.api.inspect_image(reference).await)?;
        Ok(image.map(|i| Image(i.config.unwrap_or_default())))
    }

    /// Creates the container `plan` describes, attached to its first
    /// network only (see [`Client::connect_networks`]); returns its id.
    pub async fn create(&self, plan: &Plan) -> Result<String, DockerError> {
        let options = CreateContainerOptions {
            name: Some(plan.name.clone()),
            ..Default::default()
        };
        let created = self.api.create_container(Some(options), plan.body.clone()).await?;
        Ok(created.id)
    }

    /// Attaches a created container to the other networks of its plan
    /// (the create call takes one).
    pub async fn connect_networks(&self, id: &str, plan: &Plan) -> Result<(), DockerError> {
        for (network, endpoint) in &plan.extra_networks {
            let request = NetworkConnectRequest {
                container: id.to_owned(),
                endpoint_config: Some(endpoint.clone()),
            };
            self.api
                .connect_network(network, request)
                .await
                .map_err(|source| DockerError::NetworkConnect {
                    network: network.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        Ok(self.api.start_container(id, None).await?)
    }

    /// `docker stop -t GRACE`: the stop signal, then SIGKILL after `grace`.
    /// Already stopped or gone is done.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            signal: None,
        };
        match self.api.stop_container(id, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            result => found(result).map(drop),
        }
    }

    /// Sends `signal` (`SIGUSR2`, `HUP`...) to the container's main process.
    pub async fn kill(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        Ok(self.api.kill_container(container, Some(options)).await?)
    }

    pub async fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        let options = RenameContainerOptions { name: name.to_owned() };
        Ok(self.api.rename_container(id, options).await?)
    }

    /// `docker rm -f`; with `volumes`, its anonymous volumes too. Gone is done.
    pub async fn remove(&self, id: &str, volumes: bool) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: volumes,
            ..Default::default()
        };
        found(self.api.remove_container(id, Some(options)).await).map(drop)
    }

    /// The last `lines` lines the container printed (stdout and stderr).
    pub async fn log_tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut tail = Vec::new();
        let mut logs = self.api.logs(id, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            tail.extend(chunk.to_string().lines().map(str::to_owned));
        }
        tail
    }

    /// Events from `since` (unix time, as [`super::unix_now`] gives it) on,
    /// of the given sources and actions only: the daemon filters them.
    pub fn events(
        &self,
        since: String,
        sources: &[&str],
        actions: &[&str],
    ) -> impl Stream<Item = Result<Event, DockerError>> {
        let to_strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_owned(), to_strings(sources)),
                ("event".to_owned(), to_strings(actions)),
            ])),
        };
        self.api
            .events(Some(options))
            .map(|event| event.map(convert::event).map_err(DockerError::from))
    }

    pub async fn swarm_node(&self) -> Result<SwarmNode, DockerError> {
        let swarm = self.api.info().await?.swarm.unwrap_or_default();
        Ok(SwarmNode {
            manager: swarm.local_node_state == Some(LocalNodeState::ACTIVE) && swarm.control_available == Some(true),
            node_id: swarm.node_id.unwrap_or_default(),
        })
    }
}

impl Inspected {
    pub(super) fn new(raw: ContainerInspectResponse) -> Self {
        let labels = raw.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        Self { raw, labels }
    }

    pub fn id(&self) -> &str {
        self.raw.id.as_deref().unwrap_or_default()
    }

    /// Without Docker's leading '/'.
    pub fn name(&self) -> &str {
        self.raw.name.as_deref().unwrap_or_default().trim_start_matches('/')
    }

    pub fn labels(&self) -> &HashMap<String, String> {
        &self.labels
    }

    /// The image as the container was created with it (`app:1`).
    pub fn image_reference(&self) -> Option<&str> {
        self.raw.config.as_ref()?.image.as_deref()
    }

    /// The id of the image the container runs.
    pub fn image_id(&self) -> Option<&str> {
        self.raw.image.as_deref()
    }

    pub fn state(&self) -> RunState {
        convert::run_state(&self.raw)
    }

    /// Names of the networks it is attached to.
    pub fn network_names(&self) -> Vec<String> {
        self.networks().map(|(name, _)| name.clone()).collect()
    }

    pub(super) fn network_ids(&self) -> Vec<String> {
        self.networks()
            .filter_map(|(_, endpoint)| endpoint.network_id.clone())
            // A container created but not started has endpoints without one.
            .filter(|id| !id.is_empty())
            .collect()
    }

    fn networks(&self) -> impl Iterator<Item = (&String, &bollard::models::EndpointSettings)> {
        self.raw
            .network_settings
            .iter()
            .flat_map(|n| n.networks.iter().flatten())
    }

    /// `overlay(network_id)` says whether a network is a Swarm overlay.
    pub(super) fn facts(&self, overlay: impl Fn(&str) -> bool) -> Option<ContainerFacts> {
        convert::container_facts(&self.raw, overlay)
    }
}

impl Image {
    pub fn exposed_tcp_ports(&self) -> Vec<u16> {
        convert::tcp_ports(&self.0.exposed_ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_a_404_only() {
        let answer = |status_code| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: "no such container".into(),
        };
        assert!(is_not_found(&answer(404)));
        assert!(!is_not_found(&answer(500)));
        assert!(matches!(found::<()>(Err(answer(404))), Ok(None)));
        assert!(found::<()>(Err(answer(409))).is_err());
    }
}
