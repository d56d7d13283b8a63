//! What teal knows about containers, and the services it derives from them.
//!
//! [`Inventory`] is the one owner of container state: it applies
//! [`ContainerUpdate`]s from the Docker side and turns its contents into a
//! [`Snapshot`], the plain value that rendering and status work from.
//! No I/O here.

pub mod labels;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

pub use snapshot::{Change, Excluded, Server, ServerState, Service, Snapshot};

/// A Docker container id (full, 64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Docker's view of a container's HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The container has no healthcheck.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// One network a container is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAddress {
    pub name: String,
    pub ip: Option<IpAddr>,
    /// Swarm-scoped overlay: reachable only from containers attached to it.
    pub overlay: bool,
}

/// What Docker says about one container, already out of bollard's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: ContainerId,
    pub name: String,
    pub image: String,
    /// RFC 3339 creation time; the newest container's labels win for
    /// service-wide settings.
    pub created: String,
    /// Changes on every (re)start, so a drain ends with the run it belonged to.
    pub started_at: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    pub paused: bool,
    pub health: Health,
    pub host_network: bool,
    pub networks: Vec<NetworkAddress>,
    pub exposed_tcp_ports: Vec<u16>,
}

/// A change reported by the Docker side.
#[derive(Debug, Clone)]
pub enum ContainerUpdate {
    /// A fresh listing: replaces everything known (after a (re)connect).
    Resync(Vec<ContainerFacts>),
    /// A container's current state (started, health changed, paused...).
    Upsert(ContainerFacts),
    /// Docker is stopping it (the `kill` event of `docker stop`): no new requests.
    Drain(ContainerId),
    /// Gone: died, stopped or destroyed.
    Remove(ContainerId),
}

/// The settings that decide which containers are ours and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub label_prefix: String,
    /// Only containers of this compose project.
    pub project: Option<String>,
    /// Networks teal's HAProxy is attached to, when teal runs in a container;
    /// `None` when it runs on the host.
    pub own_networks: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone)]
struct Tracked {
    facts: ContainerFacts,
    draining: bool,
}

/// Every running container that carries the service label, by id.
#[derive(Debug, Default)]
pub struct Inventory {
    containers: BTreeMap<ContainerId, Tracked>,
}

pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

impl Inventory {
    /// Applies one update; returns whether anything changed.
    pub fn apply(&mut self, update: ContainerUpdate) -> bool {
        match update {
            ContainerUpdate::Resync(all) => {
                let draining: BTreeSet<ContainerId> = self
                    .containers
                    .values()
                    .filter(|t| t.draining)
                    .map(|t| t.facts.id.clone())
                    .collect();
                let before = std::mem::take(&mut self.containers);
                for facts in all.into_iter().filter(|f| f.running) {
                    let was_draining = draining.contains(&facts.id)
                        && before
                            .get(&facts.id)
                            .is_some_and(|t| t.facts.started_at == facts.started_at);
                    self.containers.insert(
                        facts.id.clone(),
                        Tracked {
                            facts,
                            draining: was_draining,
                        },
                    );
                }
                !same_contents(&before, &self.containers)
            }
            ContainerUpdate::Upsert(facts) if !facts.running => self.containers.remove(&facts.id).is_some(),
            ContainerUpdate::Upsert(facts) => {
                let draining = self
                    .containers
                    .get(&facts.id)
                    .is_some_and(|t| t.draining && t.facts.started_at == facts.started_at);
                let next = Tracked { facts, draining };
                let changed = self
                    .containers
                    .get(&next.facts.id)
                    .is_none_or(|t| t.facts != next.facts || t.draining != next.draining);
                self.containers.insert(next.facts.id.clone(), next);
                changed
            }
            ContainerUpdate::Drain(id) => match self.containers.get_mut(&id) {
                Some(t) if !t.draining => {
                    t.draining = true;
                    true
                }
                _ => false,
            },
            ContainerUpdate::Remove(id) => self.containers.remove(&id).is_some(),
        }
    }

    pub fn knows(&self, id: &ContainerId) -> bool {
        self.containers.contains_key(id)
    }

    pub fn snapshot(&self, scope: &Scope) -> Snapshot {
        let in_scope = self.containers.values().filter(|t| match &scope.project {
            Some(project) => t.facts.labels.get(COMPOSE_PROJECT_LABEL) == Some(project),
            None => true,
        });
        snapshot::build(in_scope.map(|t| (&t.facts, t.draining)), scope)
    }
}

fn same_contents(a: &BTreeMap<ContainerId, Tracked>, b: &BTreeMap<ContainerId, Tracked>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && va.facts == vb.facts && va.draining == vb.draining)
}

#[cfg(test)]
pub(crate) mod tests;
