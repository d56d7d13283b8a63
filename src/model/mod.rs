//! What teal knows about containers, and the services it derives from them.
//!
//! [`Inventory`] is the one owner of container state: it applies
//! [`ContainerUpdate`]s from the Docker side and turns its contents into a
//! [`Snapshot`], the plain value that rendering and status work from.
//! No I/O here.

mod container_labels;
mod groups;
pub mod labels;
mod snapshot;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;

pub use container_labels::Labels;
pub use snapshot::{
    Canary, Change, Controls, Excluded, HeaderName, Maintenance, Pause, Server, ServerState, Service, SlotRouting,
    Snapshot, StickyCanary,
};

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

/// What Docker says about one container, already out of the Docker client's types.
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
    pub labels: Labels,
    pub running: bool,
    pub paused: bool,
    pub health: Health,
    pub host_network: bool,
    pub networks: Vec<NetworkAddress>,
    pub exposed_tcp_ports: Vec<u16>,
    /// The Swarm node a task runs on; `None` for a plain container.
    pub node: Option<String>,
}

/// Which discovery reported a container: each one's resync replaces only
/// what it reported itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Containers on this daemon, listed and followed through events.
    Containers,
    /// Running tasks of Swarm services (labels from the service).
    Swarm,
}

/// A change reported by the Docker side.
// One per Docker event or listing, through a channel: a boxed Upsert would
// save copies of a few hundred bytes nobody measures.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ContainerUpdate {
    /// A fresh listing of containers (after a (re)connect): replaces every
    /// container known, and no Swarm task.
    Resync(Vec<ContainerFacts>),
    /// A fresh listing of Swarm tasks: replaces every task known, and no
    /// container. A task's container carries the task's id, so a container
    /// that is also a task is the Swarm side's: container updates leave it be.
    SwarmResync(Vec<ContainerFacts>),
    /// A container's current state (started, health changed, paused...).
    Upsert(ContainerFacts),
    /// Its HEALTHCHECK's new result, as the `health_status` event says it:
    /// a running container known here needs no inspect for it.
    Health(ContainerId, Health),
    /// Docker is stopping it (the `kill` event of `docker stop`): no new requests.
    Drain(ContainerId),
    /// Its process ended (died or stopped) but the container still exists:
    /// no server, but its service stays, so requests are held until a
    /// replacement (or the same container, restarted) is ready.
    Stopped(ContainerId),
    /// Gone: destroyed (or no longer ours).
    Remove(ContainerId),
}

/// The settings that decide which containers are ours and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub label_prefix: String,
    /// Only containers of this compose project (or tasks of this Swarm stack).
    pub project: Option<String>,
    /// Networks teal's HAProxy is attached to, when teal runs in a container;
    /// `None` when it runs on the host.
    pub own_networks: Option<BTreeSet<String>>,
    /// Ports of teal's own listeners (HTTP, HTTPS, preview, status): a tcp
    /// service asking for one of them is left out.
    pub frontend_ports: BTreeSet<u16>,
}

#[derive(Debug, Clone)]
struct Tracked {
    facts: ContainerFacts,
    draining: bool,
    /// Not running any more, still there: keeps its service, not a server.
    stopped: bool,
    source: Source,
    /// `labels::parse` of `facts.labels`, with the prefix it was parsed
    /// for: a container's labels never change, so each is parsed once
    /// rather than at every snapshot (at 10,000 containers, three quarters
    /// of building one).
    parsed: OnceLock<(String, snapshot::Parsed)>,
    /// Unique to this container in this state: a new one at each change to
    /// the fields above, so a snapshot rebuilds only the services whose
    /// members' stamps changed.
    stamp: u64,
}

/// Every container that carries the service label, by id: running ones,
/// and ones seen to stop (or created beside one of the same compose
/// service) since the last listing, until destroyed.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Boxed: a B-tree node holds room for 11 entries and is two thirds
    /// full on average, which at 464 bytes a container in place left
    /// 2 MiB empty at 10,000 containers.
    containers: BTreeMap<ContainerId, Box<Tracked>>,
    /// The last stamp given out.
    stamp: u64,
    /// The containers by service and the services of the last snapshot,
    /// shared with the next while their members are the same. Behind a
    /// lock because a snapshot only reads the inventory.
    built: Mutex<snapshot::Built>,
}

pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Set by `docker stack deploy` on the services of a stack.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Whether teal reads the container label `key` (with `--label-prefix`
/// `prefix`): its own labels and those naming the compose project, compose
/// service and stack. The others are dropped at the inspect.
pub fn reads_label(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
        || [COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, STACK_NAMESPACE_LABEL].contains(&key)
}

impl Inventory {
    /// Applies one update; returns whether anything changed.
    pub fn apply(&mut self, update: ContainerUpdate) -> bool {
        match update {
            ContainerUpdate::Resync(all) => self.resync(Source::Containers, all),
            ContainerUpdate::SwarmResync(all) => self.resync(Source::Swarm, all),
            ContainerUpdate::Upsert(facts) if self.owned_by_swarm(&facts.id) => false,
            ContainerUpdate::Upsert(facts) if !facts.running => self.not_running(facts),
            ContainerUpdate::Upsert(facts) => {
                let known = self.containers.get(&facts.id);
                let draining = known.is_some_and(|t| t.draining && t.facts.started_at == facts.started_at);
                let changed = known.is_none_or(|t| t.facts != facts || t.draining != draining || t.stopped);
                if changed {
                    let next = self.tracked(facts, draining, false, Source::Containers);
                    self.put(next);
                }
                changed
            }
            ContainerUpdate::Health(id, health) => {
                let changes = self.containers.get(&id).is_some_and(|t| {
                    t.source == Source::Containers && t.facts.running && !t.stopped && t.facts.health != health
                });
                if changes {
                    self.change(&id, |t| t.facts.health = health);
                }
                changes
            }
            ContainerUpdate::Drain(id) => {
                let changes = self.containers.get(&id).is_some_and(|t| !t.draining);
                if changes {
                    self.change(&id, |t| t.draining = true);
                }
                changes
            }
            ContainerUpdate::Stopped(id) => match self.containers.get(&id).map(|t| (t.source, t.stopped)) {
                Some((Source::Containers, false)) => {
                    self.change(&id, |t| {
                        t.stopped = true;
                        t.draining = false;
                    });
                    true
                }
                Some((Source::Swarm, _)) => self.remove(&id),
                _ => false,
            },
            ContainerUpdate::Remove(id) => self.remove(&id),
        }
    }

    /// A container that exists but does not run: stopped, or created and
    /// not started yet. It keeps its service, without a server.
    fn not_running(&mut self, facts: ContainerFacts) -> bool {
        if let Some(t) = self.containers.get(&facts.id) {
            let changed = !t.stopped || t.facts != facts;
            let id = facts.id.clone();
            self.change(&id, |t| {
                if t.facts.labels != facts.labels {
                    t.parsed = OnceLock::new();
                }
                t.facts = facts;
                t.stopped = true;
                t.draining = false;
            });
            return changed;
        }
        // Created beside a container of the same compose service: compose
        // v2's recreate creates the replacement, removes the old container,
        // then starts the new one, which keeps the service meanwhile. Other
        // containers count from their start.
        if !self.has_compose_sibling(&facts) {
            return false;
        }
        let tracked = self.tracked(facts, false, true, Source::Containers);
        self.put(tracked);
        true
    }

    /// A container in a new state, with a new stamp.
    fn tracked(&mut self, facts: ContainerFacts, draining: bool, stopped: bool, source: Source) -> Box<Tracked> {
        self.stamp += 1;
        Box::new(Tracked {
            facts,
            draining,
            stopped,
            source,
            parsed: OnceLock::new(),
            stamp: self.stamp,
        })
    }

    /// Adds `tracked`, in place of the container of its id if known.
    fn put(&mut self, tracked: Box<Tracked>) {
        let groups = &mut built_mut(&mut self.built).groups;
        if let Some(known) = self.containers.get(&tracked.facts.id) {
            groups.leave(known);
        }
        groups.join(&tracked);
        self.containers.insert(tracked.facts.id.clone(), tracked);
    }

    /// Changes a known container in place, with a new stamp.
    fn change(&mut self, id: &ContainerId, change: impl FnOnce(&mut Tracked)) {
        let groups = &mut built_mut(&mut self.built).groups;
        if let Some(t) = self.containers.get_mut(id) {
            groups.leave(t);
            change(t);
            self.stamp += 1;
            t.stamp = self.stamp;
            groups.join(t);
        }
    }

    fn remove(&mut self, id: &ContainerId) -> bool {
        let groups = &mut built_mut(&mut self.built).groups;
        let removed = self.containers.remove(id);
        if let Some(t) = &removed {
            groups.leave(t);
        }
        removed.is_some()
    }

    /// Whether a container of the same compose project and service is known.
    fn has_compose_sibling(&self, facts: &ContainerFacts) -> bool {
        fn compose_service(f: &ContainerFacts) -> Option<(&str, &str)> {
            Some((
                f.labels.get(COMPOSE_PROJECT_LABEL)?,
                f.labels.get(COMPOSE_SERVICE_LABEL)?,
            ))
        }
        compose_service(facts)
            .is_some_and(|own| self.containers.values().any(|t| compose_service(&t.facts) == Some(own)))
    }

    /// Replaces what `source` reported before with `all`. A drain survives
    /// while the container runs the same start (Docker does not repeat the
    /// `kill` event in a listing).
    fn resync(&mut self, source: Source, all: Vec<ContainerFacts>) -> bool {
        let before = std::mem::take(&mut self.containers);
        let mut kept: BTreeMap<&ContainerId, &Box<Tracked>> =
            before.iter().filter(|(_, t)| t.source != source).collect();
        for facts in all.into_iter().filter(|f| f.running) {
            match kept.get(&facts.id).map(|t| t.source) {
                // The Swarm side owns task containers; a listing of containers skips them.
                Some(Source::Swarm) if source == Source::Containers => continue,
                Some(_) => {
                    kept.remove(&facts.id);
                }
                None => {}
            }
            let known = before.get(&facts.id);
            let draining = known.is_some_and(|t| t.draining && t.facts.started_at == facts.started_at);
            // The same container in the same state keeps its stamp (and
            // parsed labels): a resync rebuilds only what it changed.
            let tracked = match known {
                Some(t) if t.facts == facts && t.draining == draining && !t.stopped && t.source == source => t.clone(),
                _ => self.tracked(facts, draining, false, source),
            };
            self.containers.insert(tracked.facts.id.clone(), tracked);
        }
        for (id, tracked) in kept {
            self.containers.insert(id.clone(), tracked.clone());
        }
        // Grouped anew: services whose members kept their stamps stay shared.
        let built = built_mut(&mut self.built);
        if let Some(scope) = built.groups.scope() {
            built.groups = groups::Groups::new(&scope.clone(), self.containers.values().map(|t| &**t));
        }
        !same_contents(&before, &self.containers)
    }

    fn owned_by_swarm(&self, id: &ContainerId) -> bool {
        self.containers.get(id).is_some_and(|t| t.source == Source::Swarm)
    }

    pub fn knows(&self, id: &ContainerId) -> bool {
        self.containers.contains_key(id)
    }

    pub fn snapshot(&self, scope: &Scope) -> Snapshot {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if built.groups.scope() != Some(scope) {
            *built = snapshot::Built::new(groups::Groups::new(scope, self.containers.values().map(|t| &**t)));
        }
        let prefix = &scope.label_prefix;
        snapshot::build(&mut built, scope, |id| self.containers.get(id).map(|t| t.input(prefix)))
    }
}

/// The built state through `&mut`, without taking the lock; a poisoned
/// lock is used as it is, as [`Inventory::snapshot`] does.
fn built_mut(built: &mut Mutex<snapshot::Built>) -> &mut snapshot::Built {
    built.get_mut().unwrap_or_else(PoisonError::into_inner)
}

impl Tracked {
    /// `labels::parse` of its labels for `prefix`, parsed once.
    fn parsed(&self, prefix: &str) -> Cow<'_, snapshot::Parsed> {
        let (parsed_for, parsed) = self
            .parsed
            .get_or_init(|| (prefix.to_owned(), labels::parse(prefix, &self.facts.labels)));
        // Kept for another prefix (only tests change it): parsed again.
        match parsed_for == prefix {
            true => Cow::Borrowed(parsed),
            false => Cow::Owned(labels::parse(prefix, &self.facts.labels)),
        }
    }

    fn input(&self, prefix: &str) -> snapshot::Input<'_> {
        snapshot::Input {
            facts: &self.facts,
            parsed: self.parsed(prefix),
            draining: self.draining,
            stopped: self.stopped,
            stamp: self.stamp,
        }
    }
}

fn same_contents(a: &BTreeMap<ContainerId, Box<Tracked>>, b: &BTreeMap<ContainerId, Box<Tracked>>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && va.facts == vb.facts
                && va.draining == vb.draining
                && va.stopped == vb.stopped
                && va.source == vb.source
        })
}

#[cfg(test)]
pub(crate) mod tests;
