//! Containers -> services and servers: the plain value everything downstream reads.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::groups::Groups;
use super::labels::{self, Balance, HealthCheck, HostName, HttpPath, Mode, ServiceLabels, ServiceName, Slot};
use super::{ContainerFacts, ContainerId, Health, Scope};

/// Whether HAProxy may send new requests to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    Ready,
    /// Being stopped: keeps its in-flight requests, gets no new ones.
    Drain,
    /// Not routed: health check not passing yet, unhealthy, or paused.
    Maint,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerState::Ready => "ready",
            ServerState::Drain => "drain",
            ServerState::Maint => "maint",
        })
    }
}

impl FromStr for ServerState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "ready" => Ok(ServerState::Ready),
            "drain" => Ok(ServerState::Drain),
            "maint" => Ok(ServerState::Maint),
            _ => Err(format!("{value:?} is not a server state (ready, drain or maint)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// Unique within the backend and never reused by another container.
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u16,
    pub maxconn: Option<u32>,
    pub state: ServerState,
    /// Why a server is not ready (e.g. "health: starting").
    pub reason: Option<String>,
    pub slot: Option<Slot>,
    /// Out of rotation on purpose (`teal drain`), until the container is
    /// gone; set by routing through `crate::drained::Drained`.
    pub drained: bool,
    pub container_id: ContainerId,
    pub container_name: String,
    pub image: String,
    /// The Swarm node the task runs on; `None` for a plain container.
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: ServiceName,
    pub mode: Mode,
    pub hosts: Vec<HostName>,
    pub path: Option<HttpPath>,
    pub listen: Option<u16>,
    pub balance: Balance,
    pub health: HealthCheck,
    /// Plain-HTTP requests are redirected to HTTPS (when teal terminates TLS).
    pub https_redirect: bool,
    /// `teal.tls=acme`: teal gets a certificate for each of `hosts` (with
    /// `--acme-email`).
    pub acme: bool,
    /// `teal.hold`: how long a request waits while no server is ready;
    /// `None`: `--hold`.
    pub hold: Option<std::time::Duration>,
    /// Empty when every container of the service is left out for a reason
    /// other than its labels (no reachable address): HAProxy answers 503.
    pub servers: Vec<Server>,
    /// Blue/green routing, when the service's containers carry slot labels;
    /// set by routing through `crate::slots::LiveSlots`, `None`
    /// otherwise.
    pub slots: Option<SlotRouting>,
    /// `teal maintenance` and `teal pause`; set by `crate::controls`.
    pub controls: Controls,
    /// `teal rollout --canary`: the new containers' share of the traffic,
    /// which the servers' weights give them; set by `crate::weights`.
    pub canary: Option<Canary>,
}

/// A canary under way on a service (`teal rollout --canary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The deploy id of the rollout that runs it.
    pub deploy: String,
    /// The old containers' full ids; every other server is new.
    pub old: Vec<String>,
    /// The new set's share of the service's traffic, 0 to 100.
    pub new_percent: u8,
    /// `--canary-header`: while the new set has a share, a request that
    /// carries this header goes to a new server, whatever the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderName>,
}

impl Canary {
    /// Every server the canary does not know as old is new.
    pub fn is_new(&self, server: &Server) -> bool {
        !self.old.contains(&server.container_id.0)
    }
}

/// An HTTP header name as HAProxy's config gets it: letters, digits and
/// '-' only (a '#' or a quote would change the config line it is in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderName(String);

impl HeaderName {
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok =
            !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "{value:?} is not a header name teal takes: 1-64 characters of a-z, A-Z, 0-9 and '-' (e.g. X-Canary)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HeaderName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<HeaderName> for String {
    fn from(name: HeaderName) -> String {
        name.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A canary's header rule as HAProxy's config has it: a request carrying
/// `header` goes to one of `servers`, the new servers, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyCanary {
    pub header: HeaderName,
    pub servers: Vec<String>,
}

impl Service {
    /// The header rule of a canary with `--canary-header` while its new
    /// servers have a share; `None` otherwise. `use-server` names a server
    /// in the config, so a change of it takes a reload.
    pub fn sticky_canary(&self) -> Option<StickyCanary> {
        let canary = self
            .canary
            .as_ref()
            .filter(|c| c.new_percent > 0 && self.mode == Mode::Http)?;
        let header = canary.header.clone()?;
        let servers: Vec<String> = self
            .servers
            .iter()
            .filter(|s| canary.is_new(s))
            .map(|s| s.name.clone())
            .collect();
        (!servers.is_empty()).then_some(StickyCanary { header, servers })
    }
}

/// What an operator set on a service by hand (http services only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// `teal maintenance SERVICE on`: every request gets a 503 page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    /// The text of the page.
    pub message: String,
    /// When it was turned on, Unix seconds.
    pub since: u64,
}

/// `teal pause SERVICE`: every request is held, until `teal resume` or `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Unix seconds.
    pub until: u64,
}

/// How a service with slot labels is split between the live frontend and
/// the preview listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotRouting {
    /// The slot the live frontend serves (the other one is on preview).
    pub live: Slot,
    /// Set on the `<service>_preview` backend: the service it previews. Its
    /// routes belong to the preview listener, not the live frontend.
    pub preview_of: Option<ServiceName>,
}

/// A container that carries the service label but is not routed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub container_id: ContainerId,
    pub container_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by name. Shared between snapshots while unchanged: a change
    /// to one container rebuilds one service, and what compares snapshots
    /// (the render's cache, [`Snapshot::changes`]) skips a shared one.
    pub services: Vec<Arc<Service>>,
    pub excluded: Vec<Excluded>,
}

/// What labels::parse made of a container's labels.
pub(super) type Parsed = Result<Option<ServiceLabels>, labels::LabelError>;

/// One container as [`build`] reads it.
pub(super) struct Input<'a> {
    pub facts: &'a ContainerFacts,
    pub parsed: Cow<'a, Parsed>,
    pub draining: bool,
    pub stopped: bool,
    /// Changes whenever any of the above does (see `Tracked::stamp`).
    pub stamp: u64,
}

/// The containers by service, and what the last [`build`] made of each
/// service, kept for the next one to share while the service's members are
/// the same: at 10,000 containers, building every server at each change
/// was most of teal's CPU time.
#[derive(Debug, Default)]
pub(super) struct Built {
    /// Also says the scope the services were built for; another one
    /// builds anew.
    pub groups: Groups,
    services: BTreeMap<ServiceName, BuiltService>,
}

impl Built {
    /// Nothing built yet, for the scope of `groups`.
    pub fn new(groups: Groups) -> Self {
        Built {
            groups,
            services: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
struct BuiltService {
    /// Its members' stamps, in container id order: the same list, the same
    /// members in the same states.
    stamps: Vec<u64>,
    service: Arc<Service>,
    /// Its members HAProxy cannot reach, and why.
    excluded: Vec<Excluded>,
    /// Its oldest member's creation time: of two tcp services on one port,
    /// the older keeps it.
    oldest: String,
}

/// The snapshot of `built`'s groups, whose containers `input` finds by id.
/// Only the services whose members changed since the last build are built
/// again; the others are shared.
pub(super) fn build<'a>(
    built: &mut Built,
    scope: &Scope,
    input: impl Fn(&ContainerId) -> Option<Input<'a>>,
) -> Snapshot {
    // A member without a server is a container whose labels are fine but
    // that HAProxy cannot reach: it keeps its service (and routes) alive, so
    // requests get a 503 rather than another service's answer or a 404.
    // A stopped container is a member without a server too, for as long as
    // it exists: its service is between containers, and requests are held.
    for name in built.groups.take_changed() {
        let members: Vec<Member> = built
            .groups
            .members(&name)
            .filter_map(&input)
            .filter_map(member)
            .collect();
        if members.is_empty() {
            built.services.remove(&name);
            continue;
        }
        let stamps: Vec<u64> = members.iter().map(|m| m.stamp).collect();
        if built.services.get(&name).is_none_or(|entry| entry.stamps != stamps) {
            let entry = build_service(name.clone(), &members, stamps, scope);
            built.services.insert(name, entry);
        }
    }
    let mut excluded: Vec<Excluded> = (built.groups.unparsable().filter_map(&input))
        .filter_map(|input| match input.parsed.as_ref() {
            Err(error) => Some(exclude(input.facts, error.to_string())),
            Ok(_) => None,
        })
        .collect();
    for entry in built.services.values() {
        excluded.extend(entry.excluded.iter().cloned());
    }
    let services = assign_listen_ports(built.services.values(), scope, &mut excluded);
    excluded.sort_by(|a, b| a.container_name.cmp(&b.container_name));
    Snapshot { services, excluded }
}

/// A member of its service: a container whose labels parse and name one.
fn member(input: Input<'_>) -> Option<Member<'_>> {
    let labels = match input.parsed {
        Cow::Borrowed(Ok(Some(parsed))) => Cow::Borrowed(parsed),
        Cow::Owned(Ok(Some(parsed))) => Cow::Owned(parsed),
        _ => return None,
    };
    Some(Member {
        facts: input.facts,
        labels,
        draining: input.draining,
        stopped: input.stopped,
        stamp: input.stamp,
    })
}

/// The service of `members` (in container id order).
fn build_service(name: ServiceName, members: &[Member], stamps: Vec<u64>, scope: &Scope) -> BuiltService {
    let mut excluded = Vec::new();
    let mut servers = Vec::new();
    for member in members.iter().filter(|m| !m.stopped) {
        match server(member.facts, &member.labels, member.draining, scope) {
            Ok(server) => servers.push(server),
            Err(reason) => excluded.push(exclude(member.facts, reason)),
        }
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    // Kept until the service changes: grown by doubling, a 20-server Vec
    // held room for 32 (at 10,000 servers, megabytes of RSS).
    servers.shrink_to_fit();
    // Service-wide settings follow the newest container (of those created
    // at once, the first by id): during a rollout the new version's labels
    // are the ones being deployed.
    let newest = members
        .iter()
        .reduce(|newest, m| {
            if m.facts.created > newest.facts.created {
                m
            } else {
                newest
            }
        })
        .map(|m| &m.labels)
        .expect("a service has members");
    let oldest = members
        .iter()
        .map(|m| &m.facts.created)
        .min()
        .cloned()
        .unwrap_or_default();
    let service = Service {
        name,
        mode: newest.mode,
        hosts: newest.hosts.clone(),
        path: newest.path.clone(),
        listen: newest.listen,
        balance: newest.balance,
        health: newest.health.clone(),
        https_redirect: newest.https_redirect,
        acme: newest.acme,
        hold: newest.hold,
        servers,
        slots: None,
        controls: Controls::default(),
        canary: None,
    };
    BuiltService {
        stamps,
        service: Arc::new(service),
        excluded,
        oldest,
    }
}

struct Member<'a> {
    facts: &'a ContainerFacts,
    labels: Cow<'a, ServiceLabels>,
    draining: bool,
    stopped: bool,
    stamp: u64,
}

fn exclude(facts: &ContainerFacts, reason: String) -> Excluded {
    Excluded {
        container_id: facts.id.clone(),
        container_name: facts.name.clone(),
        reason,
    }
}

/// A tcp service binds its own port. Two services cannot share one, nor take
/// a port teal's own listeners use: HAProxy would refuse the config (or, with
/// SO_REUSEPORT, split connections between them). The service that had the
/// port first (oldest container) keeps it; the others are left out whole.
fn assign_listen_ports<'a>(
    services: impl Iterator<Item = &'a BuiltService> + Clone,
    scope: &Scope,
    excluded: &mut Vec<Excluded>,
) -> Vec<Arc<Service>> {
    let mut owners: BTreeMap<u16, (&str, &ServiceName)> = BTreeMap::new();
    for entry in services.clone() {
        let service = &entry.service;
        if let (Mode::Tcp, Some(port)) = (service.mode, service.listen) {
            if scope.frontend_ports.contains(&port) {
                continue;
            }
            let claim = (entry.oldest.as_str(), &service.name);
            let owner = owners.entry(port).or_insert(claim);
            if claim < *owner {
                *owner = claim;
            }
        }
    }
    let prefix = &scope.label_prefix;
    let mut kept = Vec::new();
    for service in services.map(|entry| &entry.service) {
        let refused = match (service.mode, service.listen) {
            (Mode::Tcp, Some(port)) if scope.frontend_ports.contains(&port) => Some(format!(
                "{prefix}.listen={port} is a port of teal's own listeners (--http-bind, --https-bind, --preview-bind, --status-bind)"
            )),
            (Mode::Tcp, Some(port)) => owners
                .get(&port)
                .filter(|(_, owner)| **owner != service.name)
                .map(|(_, owner)| format!("{prefix}.listen={port} is already taken by tcp service {owner}")),
            _ => None,
        };
        match refused {
            None => kept.push(service.clone()),
            // Its servers are the members it routed.
            Some(reason) => excluded.extend(service.servers.iter().map(|s| Excluded {
                container_id: s.container_id.clone(),
                container_name: s.container_name.clone(),
                reason: reason.clone(),
            })),
        }
    }
    kept
}

fn server(facts: &ContainerFacts, parsed: &ServiceLabels, draining: bool, scope: &Scope) -> Result<Server, String> {
    let address = address(facts, parsed, scope)?;
    let port = parsed.port.unwrap_or(match facts.exposed_tcp_ports.as_slice() {
        [only] => *only,
        _ => 80,
    });
    // On loopback, such a port is teal's or HAProxy's own listener, maybe
    // one bound to 127.0.0.1 only: routing to it would expose it publicly.
    if facts.host_network && scope.frontend_ports.contains(&port) {
        return Err(format!(
            "host network: port {port} is one of teal's own listeners (--http-bind, --https-bind, --preview-bind, \
             --status-bind); set {}.port to the port the container listens on",
            scope.label_prefix
        ));
    }
    let (state, reason) = if draining {
        (ServerState::Drain, Some("stopping".to_owned()))
    } else if facts.paused {
        (ServerState::Maint, Some("paused".to_owned()))
    } else {
        match facts.health {
            Health::None | Health::Healthy => (ServerState::Ready, None),
            Health::Starting => (ServerState::Maint, Some("health: starting".to_owned())),
            Health::Unhealthy => (ServerState::Maint, Some("health: unhealthy".to_owned())),
        }
    };
    Ok(Server {
        name: server_name(facts),
        address,
        port,
        weight: parsed.weight,
        maxconn: parsed.maxconn,
        state,
        reason,
        slot: parsed.slot,
        drained: false,
        container_id: facts.id.clone(),
        container_name: facts.name.clone(),
        image: facts.image.clone(),
        node: facts.node.clone(),
    })
}

/// The container name plus a piece of its id: readable in HAProxy's stats,
/// and never the same for two containers even when a name is reused.
fn server_name(facts: &ContainerFacts) -> String {
    let safe: String = facts
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{}", facts.id.0.get(..8).unwrap_or(&facts.id.0))
}

/// The address HAProxy uses, or why there is none it can reach.
fn address(facts: &ContainerFacts, parsed: &ServiceLabels, scope: &Scope) -> Result<IpAddr, String> {
    if facts.host_network {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let prefix = &scope.label_prefix;
    let network = match (&parsed.network, &scope.own_networks) {
        (Some(wanted), _) => facts
            .networks
            .iter()
            .find(|n| &n.name == wanted)
            .ok_or_else(|| format!("not attached to network {wanted:?} named by {prefix}.network"))?,
        (None, Some(own)) => facts.networks.iter().find(|n| own.contains(&n.name)).ok_or_else(|| {
            format!(
                "shares no network with teal (teal is on {}); attach it to one of those or set {prefix}.network",
                own.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })?,
        (None, None) => match facts.networks.as_slice() {
            [only] => only,
            [] => return Err("attached to no network".to_owned()),
            several => {
                let names: Vec<&str> = several.iter().map(|n| n.name.as_str()).collect();
                return Err(format!(
                    "on several networks ({}); set {prefix}.network",
                    names.join(", ")
                ));
            }
        },
    };
    let reachable = !network.overlay
        || scope
            .own_networks
            .as_ref()
            .is_some_and(|own| own.contains(&network.name));
    if !reachable {
        return Err(format!(
            "overlay network {:?} is not reachable from teal's HAProxy; run teal attached to it",
            network.name
        ));
    }
    network
        .ip
        .ok_or_else(|| format!("no address on network {:?} yet", network.name))
}

/// One difference between two snapshots, as the operator would say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    ServerAdded {
        service: &'a ServiceName,
        server: &'a Server,
    },
    ServerRemoved {
        service: &'a ServiceName,
        server: &'a Server,
    },
    /// Same server, new state or weight.
    ServerUpdated {
        service: &'a ServiceName,
        server: &'a Server,
        was: &'a Server,
    },
    ContainerExcluded(&'a Excluded),
}

impl Snapshot {
    /// What changed from `self` to `next`, server by server: added and
    /// updated servers by service and name, then removed ones, then newly
    /// excluded containers. A service both share (the same `Arc`) did not
    /// change and is skipped: at 10,000 servers, comparing them all at each
    /// snapshot was most of the model owner's time.
    pub fn changes<'a>(&'a self, next: &'a Snapshot) -> Vec<Change<'a>> {
        let by_name = |s: &'a Snapshot| -> BTreeMap<&'a ServiceName, &'a Arc<Service>> {
            s.services.iter().map(|svc| (&svc.name, svc)).collect()
        };
        let (before, after) = (by_name(self), by_name(next));
        let servers = |svc: Option<&&'a Arc<Service>>| -> BTreeMap<&'a str, &'a Server> {
            let servers = svc.into_iter().flat_map(|svc| svc.servers.iter());
            servers.map(|srv| (srv.name.as_str(), srv)).collect()
        };
        let mut changes = Vec::new();
        let mut removed = Vec::new();
        let names: BTreeSet<&'a ServiceName> = before.keys().chain(after.keys()).copied().collect();
        for service in names {
            let (was, now) = (before.get(service), after.get(service));
            if let (Some(was), Some(now)) = (was, now) {
                if Arc::ptr_eq(was, now) {
                    continue;
                }
            }
            let (was, now) = (servers(was), servers(now));
            for (name, &server) in &now {
                match was.get(name) {
                    None => changes.push(Change::ServerAdded { service, server }),
                    Some(&was) if was != server => changes.push(Change::ServerUpdated { service, server, was }),
                    Some(_) => {}
                }
            }
            let gone = was.iter().filter(|(name, _)| !now.contains_key(*name));
            removed.extend(gone.map(|(_, &server)| Change::ServerRemoved { service, server }));
        }
        changes.append(&mut removed);
        for excluded in &next.excluded {
            if !self.excluded.contains(excluded) {
                changes.push(Change::ContainerExcluded(excluded));
            }
        }
        changes
    }

    /// True when every difference to `next` takes a server out of rotation
    /// (removed, or no longer ready), and there is at least one.
    pub fn only_takes_servers_out(&self, next: &Snapshot) -> bool {
        let changes = self.changes(next);
        !changes.is_empty()
            && changes.iter().all(|change| match change {
                Change::ServerRemoved { .. } => true,
                Change::ServerUpdated { server, was, .. } => {
                    was.state == ServerState::Ready && server.state != ServerState::Ready
                }
                Change::ServerAdded { .. } | Change::ContainerExcluded(_) => false,
            })
    }

    /// True when `next` has the same services with the same settings as
    /// `self`, whatever their servers: HAProxy's runtime API can then add,
    /// remove and change servers without a reload. A canary header's rule
    /// names its servers, so it counts as a setting.
    pub fn same_services(&self, next: &Snapshot) -> bool {
        self.services.len() == next.services.len()
            && (self.services.iter().zip(&next.services))
                .all(|(a, b)| Arc::ptr_eq(a, b) || (a.same_settings(b) && a.sticky_canary() == b.sticky_canary()))
    }
}

impl Service {
    /// Equal but for the servers and the canary (weights, which the
    /// runtime API sets). Every field is named, so a new one is not
    /// forgotten here.
    fn same_settings(&self, other: &Service) -> bool {
        let Service {
            name,
            mode,
            hosts,
            path,
            listen,
            balance,
            health,
            https_redirect,
            acme,
            hold,
            servers: _,
            slots,
            controls,
            canary: _,
        } = self;
        *name == other.name
            && *mode == other.mode
            && *hosts == other.hosts
            && *path == other.path
            && *listen == other.listen
            && *balance == other.balance
            && *health == other.health
            && *https_redirect == other.https_redirect
            && *acme == other.acme
            && *hold == other.hold
            && *slots == other.slots
            && *controls == other.controls
    }
}
