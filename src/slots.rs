//! Blue/green slots: which slot of each service the live frontend serves.
//!
//! The choice lives in one file, `<state-dir>/slots.json` (`{"web": "green"}`),
//! and nowhere else ([`crate::state_file`]): `teal switch` rewrites it,
//! `teal run` follows it. A service without an entry is live on blue.
//!
//! A service whose containers carry slot labels keeps the live slot's
//! servers (and any without a slot) under its own name and gets a
//! `<service>_preview` backend with the other slot's servers, which the
//! preview listener (`--preview-bind`) serves. Render, apply and `/status`
//! all read the routed snapshot, so runtime API commands and HAProxy's
//! per-server states name the backends as rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::model::labels::{ServiceName, Slot};
use crate::model::{Excluded, Server, Service, SlotRouting, Snapshot};
use crate::state_file::{self, Choice, StateFileError};

/// Service name -> the slot its live frontend serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct LiveSlots(BTreeMap<String, Slot>);

impl Choice for LiveSlots {
    const FILE: &'static str = "slots.json";
    const WITHOUT_IT: &'static str = "a service without an entry is live on blue";

    const ENTRY: &'static str = r#""SERVICE": "blue|green""#;

    type Entry = String;

    fn from_entries(entries: BTreeMap<String, String>) -> Result<Self, String> {
        let mut slots = BTreeMap::new();
        for (service, slot) in entries {
            ServiceName::parse(&service).map_err(|reason| format!("service {service:?}: {reason}"))?;
            let slot = slot.parse().map_err(|reason| format!("slot {slot:?}: {reason}"))?;
            slots.insert(service, slot);
        }
        Ok(Self(slots))
    }

    /// Splits each service with slot labels into its live backend and its
    /// `<service>_preview` backend. Pure.
    fn route(&self, mut snapshot: Snapshot) -> Snapshot {
        let taken: BTreeSet<ServiceName> = snapshot.services.iter().map(|s| s.name.clone()).collect();
        let mut previews = Vec::new();
        for service in &mut snapshot.services {
            if service.servers.iter().all(|s| s.slot.is_none()) {
                continue;
            }
            let service = Arc::make_mut(service);
            let live_slot = self.live(&service.name);
            let (on_preview, on_live): (Vec<Server>, Vec<Server>) = std::mem::take(&mut service.servers)
                .into_iter()
                .partition(|s| s.slot.is_some_and(|slot| slot != live_slot));
            service.servers = on_live;
            service.slots = Some(SlotRouting {
                live: live_slot,
                preview_of: None,
            });
            let name = preview_name(&service.name).and_then(|name| {
                if taken.contains(&name) {
                    Err(format!(
                        "no preview backend for {}: a service is named {name}",
                        service.name
                    ))
                } else {
                    Ok(name)
                }
            });
            match name {
                Ok(name) => previews.push(Arc::new(Service {
                    name,
                    servers: on_preview,
                    slots: Some(SlotRouting {
                        live: live_slot,
                        preview_of: Some(service.name.clone()),
                    }),
                    ..service.clone()
                })),
                Err(reason) => snapshot.excluded.extend(on_preview.into_iter().map(|s| Excluded {
                    container_id: s.container_id,
                    container_name: s.container_name,
                    reason: reason.clone(),
                })),
            }
        }
        snapshot.services.extend(previews);
        snapshot.services.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot
            .excluded
            .sort_by(|a, b| a.container_name.cmp(&b.container_name));
        snapshot
    }

    /// Only servers with a slot label are split off.
    fn changes(&self, snapshot: &Snapshot) -> bool {
        snapshot
            .services
            .iter()
            .any(|service| service.servers.iter().any(|s| s.slot.is_some()))
    }

    fn log_edit(&self, before: &Self) {
        for (service, slot) in &self.0 {
            if before.0.get(service) != Some(slot) {
                tracing::info!(%service, live = %slot, "live slot switched");
            }
        }
    }
}

impl LiveSlots {
    /// The choice on disk; a missing file means every service is live on blue.
    pub fn load(state_dir: &Path) -> Result<Self, StateFileError> {
        state_file::load(state_dir)
    }

    pub fn live(&self, service: &ServiceName) -> Slot {
        self.0.get(service.as_str()).copied().unwrap_or(Slot::Blue)
    }
}

pub fn other(slot: Slot) -> Slot {
    match slot {
        Slot::Blue => Slot::Green,
        Slot::Green => Slot::Blue,
    }
}

/// Sets the live slot of `service` on disk (`to`, else the other one) and
/// returns it; two concurrent flips give two flips, never one lost.
pub fn store(state_dir: &Path, service: &ServiceName, to: Option<Slot>) -> Result<Slot, StateFileError> {
    state_file::edit(state_dir, |slots: &mut LiveSlots| {
        let next = to.unwrap_or_else(|| other(slots.live(service)));
        slots.0.insert(service.to_string(), next);
        next
    })
}

/// The name of a service's preview backend.
pub fn preview_name(service: &ServiceName) -> Result<ServiceName, String> {
    ServiceName::parse(&format!("{service}_preview"))
        .map_err(|reason| format!("no preview backend for {service}: {service}_preview {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{facts, scope};
    use crate::model::{ContainerUpdate, Inventory};

    fn snapshot(containers: &[(&str, Option<&str>)]) -> Snapshot {
        let mut inventory = Inventory::default();
        for (i, (id, slot)) in containers.iter().enumerate() {
            let mut f = facts(id, "web", &format!("10.0.0.{}", i + 2));
            if let Some(slot) = slot {
                f.labels.insert("teal.slot", slot);
            }
            inventory.apply(ContainerUpdate::Upsert(f));
        }
        inventory.snapshot(&scope())
    }

    fn servers(snapshot: &Snapshot, service: &str) -> Vec<String> {
        let service = snapshot.services.iter().find(|s| s.name.as_str() == service).unwrap();
        service.servers.iter().map(|s| s.container_name.clone()).collect()
    }

    #[test]
    fn services_without_slots_are_left_alone() {
        let before = snapshot(&[("a", None), ("b", None)]);
        assert_eq!(LiveSlots::default().route(before.clone()), before);
        assert!(!LiveSlots::default().changes(&before), "passed on as it is");
    }

    #[test]
    fn blue_is_live_until_switched() {
        let snap = snapshot(&[("a", Some("blue")), ("b", Some("green")), ("c", None)]);
        assert!(LiveSlots::default().changes(&snap));
        let routed = LiveSlots::default().route(snap.clone());
        assert_eq!(servers(&routed, "web"), ["app-a", "app-c"]);
        assert_eq!(servers(&routed, "web_preview"), ["app-b"]);
        let preview = &routed.services[1];
        assert_eq!(
            preview.slots.as_ref().unwrap().preview_of.as_ref().unwrap().as_str(),
            "web"
        );

        let green = LiveSlots::parse(r#"{"web": "green"}"#).unwrap();
        let routed = green.route(snap);
        assert_eq!(servers(&routed, "web"), ["app-b", "app-c"]);
        assert_eq!(servers(&routed, "web_preview"), ["app-a"]);
        assert_eq!(routed.services[0].slots.as_ref().unwrap().live, Slot::Green);
    }

    #[test]
    fn a_taken_preview_name_leaves_preview_servers_out() {
        let mut snap = snapshot(&[("a", Some("blue")), ("b", Some("green"))]);
        let mut other = Service::clone(&snap.services[0]);
        other.name = ServiceName::parse("web_preview").unwrap();
        other.servers.clear();
        snap.services.push(Arc::new(other));
        let routed = LiveSlots::default().route(snap);
        assert_eq!(routed.excluded.len(), 1);
        assert!(
            routed.excluded[0].reason.contains("web_preview"),
            "{:?}",
            routed.excluded
        );
    }

    #[test]
    fn the_preview_listener_gets_the_other_slot_with_the_same_routes() {
        use crate::render::{Context, ContextSettings, Renderer, DEFAULT_TEMPLATE};
        let mut snap = snapshot(&[("a", Some("blue")), ("b", Some("green"))]);
        Arc::make_mut(&mut snap.services[0]).hosts =
            vec![crate::model::labels::HostName::parse("shop.example").unwrap()];
        let routed = LiveSlots::default().route(snap);
        let settings = crate::settings::Settings {
            preview_bind: Some("127.0.0.1:8081".parse().unwrap()),
            ..Default::default()
        };
        let settings = ContextSettings::new(&settings).unwrap();
        let text = Renderer::new(DEFAULT_TEMPLATE)
            .unwrap()
            .render(&Context::new(&settings, &routed))
            .unwrap();
        let (live, rest) = text.split_once("frontend teal_preview").expect("a preview frontend");
        let preview = rest.split("\nbackend ").next().unwrap();
        assert!(
            live.contains("use_backend web if route0_host") && !live.contains("web_preview"),
            "{live}"
        );
        assert!(preview.contains("bind 127.0.0.1:8081"), "{preview}");
        assert!(preview.contains("use_backend web_preview if route0_host"), "{preview}");
        assert!(preview.contains("default_backend teal_not_found"), "{preview}");
        let backend = |name: &str| {
            text.split(&format!("backend {name}\n"))
                .nth(1)
                .unwrap()
                .split("\n\n")
                .next()
                .unwrap()
                .to_owned()
        };
        assert!(backend("web").contains("server app-a-") && !backend("web").contains("server app-b-"));
        assert!(backend("web_preview").contains("server app-b-"));
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let web = ServiceName::parse("web").unwrap();
        assert_eq!(LiveSlots::load(dir.path()).unwrap(), LiveSlots::default());
        assert_eq!(store(dir.path(), &web, None).unwrap(), Slot::Green);
        assert_eq!(store(dir.path(), &web, None).unwrap(), Slot::Blue);
        assert_eq!(store(dir.path(), &web, Some(Slot::Green)).unwrap(), Slot::Green);
        assert_eq!(LiveSlots::load(dir.path()).unwrap().live(&web), Slot::Green);
        for bad in [r#"{"web": "red"}"#, "[]", r#"{"we b": "blue"}"#] {
            assert!(LiveSlots::parse(bad).is_err(), "{bad}");
        }
    }
}
