//! Maintenance and pause: what an operator sets on a service by hand
//! (`teal maintenance`, `teal pause`, `teal resume`, in [`command`]).
//!
//! One of the state dir's choices ([`crate::state_file`]):
//! `<state-dir>/controls.json`, `{"web": {"maintenance": {"message": "...",
//! "since": 1764633600}}, "api": {"pause": {"until": 1764633630}}}`. So
//! maintenance survives a restart of teal (and of HAProxy), and can be set
//! while the daemon is down.
//!
//! The daemon sets each http service's [`Controls`] on the snapshot, so
//! render, apply and `/status` all see them: maintenance renders a `return`
//! of the page (written to `<state-dir>/maintenance/SERVICE.html`), a pause
//! sends every request to the service's hold until its end (see
//! `haproxy/hold.lua`). A pause ends by itself at `until`: the config says so
//! (HAProxy compares the time), and the daemon routes the snapshot again
//! without it then.

pub mod command;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::apply::write_atomic;
use crate::model::labels::{Mode, ServiceName};
use crate::model::{Controls, Snapshot};
use crate::state_file::{self, Choice, StateFileError};

/// The page's text when `--message` is not given.
pub const DEFAULT_MESSAGE: &str = "This service is down for maintenance and will be back shortly.";
/// HAProxy serves the page from one buffer (16 kB with its headers).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The longest `teal pause --max`: held requests are open connections.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Service name -> what is set on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ServiceControls(BTreeMap<ServiceName, Controls>);

impl Choice for ServiceControls {
    const FILE: &'static str = "controls.json";
    const WITHOUT_IT: &'static str = "deleting it ends every maintenance and pause";
    const ENTRY: &'static str =
        r#""SERVICE": {"maintenance": {"message": TEXT, "since": SECS}, "pause": {"until": SECS}}"#;

    type Entry = Controls;

    fn from_entries(entries: BTreeMap<String, Controls>) -> Result<Self, String> {
        state_file::by_service(entries).map(Self)
    }

    /// Each http service's controls, without the pauses that have ended.
    fn route(&self, snapshot: Snapshot) -> Snapshot {
        self.route_at(snapshot, unix_now())
    }

    fn changes(&self, snapshot: &Snapshot) -> bool {
        let current = self.current(unix_now());
        let mut http = snapshot.services.iter().filter(|s| s.mode == Mode::Http);
        http.any(|service| service.controls != current.of(&service.name))
    }

    fn log_edit(&self, before: &Self) {
        let names: std::collections::BTreeSet<&ServiceName> = before.0.keys().chain(self.0.keys()).collect();
        for service in names {
            let (was, now) = (before.of(service), self.of(service));
            if was.maintenance.is_some() != now.maintenance.is_some() {
                tracing::info!(%service, on = now.maintenance.is_some(), "maintenance");
            }
            if was.pause != now.pause {
                tracing::info!(%service, until = now.pause.map(|p| p.until), "pause");
            }
        }
    }

    /// Writes the page of every service in maintenance. A page that cannot
    /// be written is logged: HAProxy then refuses that service's backend,
    /// which teal leaves out alone.
    fn taken_up(&self, state_dir: &Path) {
        write_pages(&pages_dir(state_dir), self);
    }

    fn changes_in(&self) -> Option<Duration> {
        let now = unix_now();
        let next_end = self
            .current(now)
            .0
            .values()
            .filter_map(|c| c.pause.map(|p| p.until))
            .min()?;
        Some(Duration::from_secs(next_end - now))
    }
}

impl ServiceControls {
    pub fn load(state_dir: &Path) -> Result<Self, StateFileError> {
        state_file::load(state_dir)
    }

    pub fn of(&self, service: &ServiceName) -> Controls {
        self.0.get(service).cloned().unwrap_or_default()
    }

    /// The same settings without the pauses that ended by `now`.
    fn current(&self, now: u64) -> Self {
        let mut current = self.clone();
        for controls in current.0.values_mut() {
            controls.pause = controls.pause.filter(|pause| pause.until > now);
        }
        current.0.retain(|_, controls| *controls != Controls::default());
        current
    }

    /// [`Choice::route`] at `now`. Pure.
    fn route_at(&self, mut snapshot: Snapshot, now: u64) -> Snapshot {
        let current = self.current(now);
        for service in snapshot.services.iter_mut().filter(|s| s.mode == Mode::Http) {
            let controls = current.of(&service.name);
            // Only the services whose controls change are copied.
            if service.controls != controls {
                Arc::make_mut(service).controls = controls;
            }
        }
        snapshot
    }
}

/// Changes what is set on `service` on disk (`change` gets the current
/// settings, ended pauses left out) and returns the new ones.
pub fn store(
    state_dir: &Path,
    service: &ServiceName,
    change: impl FnOnce(&mut Controls),
) -> Result<Controls, StateFileError> {
    state_file::edit(state_dir, |all: &mut ServiceControls| {
        *all = all.current(unix_now());
        let mut controls = all.of(service);
        change(&mut controls);
        if controls == Controls::default() {
            all.0.remove(service);
        } else {
            all.0.insert(service.clone(), controls.clone());
        }
        controls
    })
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Where the daemon writes the maintenance pages (`SERVICE.html`).
pub fn pages_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("maintenance")
}

/// The page HAProxy answers with: the message, escaped, in a minimal page.
pub fn page(message: &str) -> String {
    let message = handlebars::html_escape(message);
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Down for maintenance</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#234}}</style>\n\
         </head>\n<body><h1>Down for maintenance</h1><p>{message}</p></body>\n</html>\n"
    )
}

/// Writes the page of every service in maintenance into `dir`.
pub fn write_pages(dir: &Path, controls: &ServiceControls) {
    for (service, set) in &controls.0 {
        let Some(maintenance) = &set.maintenance else { continue };
        let path = dir.join(format!("{service}.html"));
        let written = crate::apply::create_private_dir(dir)
            .and_then(|()| write_atomic(&path, page(&maintenance.message).as_bytes()));
        if let Err(error) = written {
            tracing::error!(%service, path = %path.display(), %error, "cannot write the maintenance page");
        }
    }
}

#[cfg(test)]
mod tests;
