//! Drained containers: out of rotation on purpose, by `teal drain`, and by
//! `teal rollout` before it stops an old container.
//!
//! The choice is `<state-dir>/drained.json` ([`crate::state_file`]), each
//! drained container's full id with its name for people reading the file:
//! `{"3f2a...": "web-1"}`. A container's id is never reused, so an entry
//! holds exactly as long as its container exists, across restarts of teal
//! and of the container itself; `teal drain` drops the entries of
//! containers that are gone each time it edits the file.
//!
//! A drained container's server is rendered and kept in HAProxy in the
//! `drain` state (no new requests, the ones in flight finish), whatever
//! Docker says of its health.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::model::{ServerState, Service, Snapshot};
use crate::state_file::{self, Choice, StateFileError};

/// Container id -> its name when it was drained.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Drained(BTreeMap<String, String>);

/// The reason `/status` and the template context give for a drained server.
pub const REASON: &str = "drained by teal drain";

impl Choice for Drained {
    const FILE: &'static str = "drained.json";
    const WITHOUT_IT: &'static str = "every drained container goes back into rotation";

    const ENTRY: &'static str = r#""CONTAINER ID": "NAME""#;

    type Entry = String;

    fn from_entries(entries: BTreeMap<String, String>) -> Result<Self, String> {
        for id in entries.keys() {
            let full_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !full_id {
                return Err(format!("{id:?} is not a full container id (64 hex digits)"));
            }
        }
        Ok(Self(entries))
    }

    /// Every drained container's server in the `drain` state. Pure.
    fn route(&self, mut snapshot: Snapshot) -> Snapshot {
        // Only the services with a drained server are copied.
        let drains = |s: &Service| s.servers.iter().any(|s| self.contains(&s.container_id.0));
        let services = snapshot.services.iter_mut().filter(|s| drains(s)).map(Arc::make_mut);
        let servers = services.flat_map(|s| s.servers.iter_mut());
        for server in servers.filter(|s| self.contains(&s.container_id.0)) {
            server.drained = true;
            server.state = ServerState::Drain;
            server.reason = Some(match server.reason.take() {
                Some(other) => format!("{REASON}; {other}"),
                None => REASON.to_owned(),
            });
        }
        snapshot
    }

    fn changes(&self, snapshot: &Snapshot) -> bool {
        let mut servers = snapshot.services.iter().flat_map(|s| &s.servers);
        servers.any(|s| self.contains(&s.container_id.0))
    }

    fn log_edit(&self, before: &Self) {
        for (id, name) in &self.0 {
            if !before.0.contains_key(id) {
                tracing::info!(container = %name, "drained: out of rotation until the container is gone");
            }
        }
        for (id, name) in &before.0 {
            if !self.0.contains_key(id) {
                tracing::info!(container = %name, "no longer drained: back in rotation when ready");
            }
        }
    }
}

impl Drained {
    pub fn load(state_dir: &Path) -> Result<Self, StateFileError> {
        state_file::load(state_dir)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Drains the containers `add` (id, name) and forgets the ones in `gone`
/// (ids of containers that no longer exist), in one edit of the file.
pub fn store(state_dir: &Path, add: &[(&str, &str)], gone: &[String]) -> Result<(), StateFileError> {
    state_file::edit(state_dir, |drained: &mut Drained| {
        drained.0.retain(|id, _| !gone.contains(id));
        for (id, name) in add {
            drained.0.insert((*id).to_owned(), (*name).to_owned());
        }
    })
}

/// Puts the container back into rotation (once it is ready); whether it
/// was drained.
pub fn undo(state_dir: &Path, id: &str) -> Result<bool, StateFileError> {
    state_file::edit(state_dir, |drained: &mut Drained| drained.0.remove(id).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{facts, scope};
    use crate::model::{ContainerUpdate, Health, Inventory};

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn a_drained_server_drains_whatever_its_health() {
        let mut inventory = Inventory::default();
        for (c, address, health) in [('a', "10.0.0.2", Health::None), ('b', "10.0.0.3", Health::Starting)] {
            let mut f = facts(&id(c), "web", address);
            f.health = health;
            inventory.apply(ContainerUpdate::Upsert(f));
        }
        inventory.apply(ContainerUpdate::Upsert(facts(&id('c'), "web", "10.0.0.4")));
        let snapshot = inventory.snapshot(&scope());
        let drained = Drained::parse(&format!(r#"{{"{}": "app-a", "{}": "app-b"}}"#, id('a'), id('b'))).unwrap();
        assert!(drained.changes(&snapshot));
        assert!(
            !Drained::default().changes(&snapshot),
            "nothing drained: passed on as it is"
        );
        let routed = drained.route(snapshot);
        let states: Vec<(ServerState, bool, Option<&str>)> = routed.services[0]
            .servers
            .iter()
            .map(|s| (s.state, s.drained, s.reason.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                (ServerState::Drain, true, Some(REASON)),
                (
                    ServerState::Drain,
                    true,
                    Some("drained by teal drain; health: starting")
                ),
                (ServerState::Ready, false, None),
            ]
        );
    }

    #[test]
    fn the_file_keeps_each_container_until_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (id('a'), id('b'));
        assert_eq!(Drained::load(dir.path()).unwrap(), Drained::default());
        store(dir.path(), &[(&a, "web-1")], &[]).unwrap();
        store(dir.path(), &[(&b, "web-2")], &[]).unwrap();
        assert_eq!(Drained::load(dir.path()).unwrap().ids().count(), 2);
        store(dir.path(), &[], std::slice::from_ref(&a)).unwrap();
        let left = Drained::load(dir.path()).unwrap();
        assert!(!left.contains(&a) && left.contains(&b));
        assert!(undo(dir.path(), &b).unwrap());
        assert!(!undo(dir.path(), &b).unwrap());
        assert_eq!(Drained::load(dir.path()).unwrap(), Drained::default());
        for bad in ["[]", r#"{"web-1": "web-1"}"#, r#"{"abc": "x"}"#] {
            assert!(Drained::parse(bad).is_err(), "{bad}");
        }
    }
}
