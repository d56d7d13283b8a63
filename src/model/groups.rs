//! The inventory's containers grouped by service, kept up to date as
//! updates arrive: a snapshot rebuilds only the services whose members
//! changed since the last one. Grouping all 10,000 containers at every
//! snapshot cost milliseconds per Docker event.

use std::collections::{BTreeMap, BTreeSet};

use super::labels::ServiceName;
use super::{ContainerId, Scope, Tracked, COMPOSE_PROJECT_LABEL, STACK_NAMESPACE_LABEL};

/// Where a container goes in a snapshot of the groups' scope.
enum Place {
    Member(ServiceName),
    /// Its labels do not parse: left out, with the error.
    Unparsable,
}

/// Grouped for one scope: the last snapshot's. Until the first snapshot
/// there is none and nothing is grouped.
#[derive(Debug, Default)]
pub(super) struct Groups {
    scope: Option<Scope>,
    /// Each service's members, by id: the order a service is built in.
    members: BTreeMap<ServiceName, BTreeSet<ContainerId>>,
    unparsable: BTreeSet<ContainerId>,
    /// Services a member joined, left or changed in since the last snapshot.
    changed: BTreeSet<ServiceName>,
}

impl Groups {
    /// Every container of `containers` grouped for `scope`, every service
    /// marked changed.
    pub fn new<'a>(scope: &Scope, containers: impl Iterator<Item = &'a Tracked>) -> Self {
        let mut groups = Groups {
            scope: Some(scope.clone()),
            ..Groups::default()
        };
        for tracked in containers {
            groups.join(tracked);
        }
        groups
    }

    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// `tracked` is in the inventory now (new, or changed in place).
    pub fn join(&mut self, tracked: &Tracked) {
        let id = &tracked.facts.id;
        match self.place(tracked) {
            Some(Place::Member(service)) => {
                self.members.entry(service.clone()).or_default().insert(id.clone());
                self.changed.insert(service);
            }
            Some(Place::Unparsable) => {
                self.unparsable.insert(id.clone());
            }
            None => {}
        }
    }

    /// `tracked` is about to leave the inventory or to change.
    pub fn leave(&mut self, tracked: &Tracked) {
        let id = &tracked.facts.id;
        match self.place(tracked) {
            Some(Place::Member(service)) => {
                if let Some(members) = self.members.get_mut(&service) {
                    members.remove(id);
                    if members.is_empty() {
                        self.members.remove(&service);
                    }
                }
                self.changed.insert(service);
            }
            Some(Place::Unparsable) => {
                self.unparsable.remove(id);
            }
            None => {}
        }
    }

    /// The services changed since the last call, which are all of them
    /// after [`Groups::new`].
    pub fn take_changed(&mut self) -> BTreeSet<ServiceName> {
        std::mem::take(&mut self.changed)
    }

    /// The members of `service`, in id order; none when it has no more.
    pub fn members(&self, service: &ServiceName) -> impl Iterator<Item = &ContainerId> {
        self.members.get(service).into_iter().flatten()
    }

    pub fn unparsable(&self) -> impl Iterator<Item = &ContainerId> {
        self.unparsable.iter()
    }

    /// `None` when `tracked` is in no snapshot of the scope: out of its
    /// project, or without the service label of its prefix.
    fn place(&self, tracked: &Tracked) -> Option<Place> {
        let scope = self.scope.as_ref()?;
        let labels = &tracked.facts.labels;
        if let Some(project) = &scope.project {
            let in_project = [COMPOSE_PROJECT_LABEL, STACK_NAMESPACE_LABEL]
                .iter()
                .any(|label| labels.get(label) == Some(project));
            if !in_project {
                return None;
            }
        }
        match tracked.parsed(&scope.label_prefix).as_ref() {
            Ok(Some(parsed)) => Some(Place::Member(parsed.service.clone())),
            Ok(None) => None,
            Err(_) => Some(Place::Unparsable),
        }
    }
}
