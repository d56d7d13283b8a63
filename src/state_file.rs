//! The operator's choices that `teal run` follows from files in
//! `--state-dir`: the live blue/green slots (`slots.json`, `teal switch`),
//! the drained containers (`drained.json`, `teal drain`), the canary
//! weights (`weights.json`, `teal rollout --canary`), and maintenance and
//! pauses (`controls.json`, `teal maintenance`, `teal pause`).
//!
//! Each choice is one JSON file, rewritten atomically under a lock by its
//! command and watched by the daemon, which routes every snapshot of the
//! model through it, between the model's owner and everything that reads
//! it. So a choice needs no write API on the (unauthenticated) status
//! endpoint, survives a restart of either side, and can be made while the
//! daemon is down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::apply::write_atomic;
use crate::model::labels::ServiceName;
use crate::model::Snapshot;

/// One kind of choice and its file (the value serialized as it is).
pub trait Choice: Default + PartialEq + serde::Serialize + Send + Sync + Sized + 'static {
    /// Its file under `--state-dir`, `NAME.json`; `NAME.lock` beside it
    /// serialises the read-edit-write cycles of concurrent commands.
    const FILE: &'static str;
    /// What deleting the file would mean, for the error that says to.
    const WITHOUT_IT: &'static str;

    /// One entry of the file, a JSON map of names to entries, for the error
    /// that shows the expected shape: `"SERVICE": "blue|green"`.
    const ENTRY: &'static str;

    /// The value of one entry.
    type Entry: serde::de::DeserializeOwned;

    /// The choice from the file's entries, each checked.
    fn from_entries(entries: BTreeMap<String, Self::Entry>) -> Result<Self, String>;

    fn parse(text: &str) -> Result<Self, String> {
        let entries = serde_json::from_str(text).map_err(|e| format!("expected {{{}}}: {e}", Self::ENTRY))?;
        Self::from_entries(entries)
    }

    fn to_json(&self) -> String {
        // Maps of strings to plain values always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
    /// The snapshot with this choice applied.
    fn route(&self, snapshot: Snapshot) -> Snapshot;
    /// Whether [`Choice::route`] would change `snapshot`: when not, the
    /// snapshot is passed on as it is, not copied (at 10,000 servers a copy
    /// costs milliseconds, and the choice is usually empty).
    fn changes(&self, snapshot: &Snapshot) -> bool;
    /// Logs what a picked-up edit changed from `before`.
    fn log_edit(&self, before: &Self);
    /// Done by the daemon with each choice it takes up (at start and for
    /// each edit): files HAProxy reads, say.
    fn taken_up(&self, _state_dir: &Path) {}
    /// When the choice changes by itself (a pause ends): the snapshot is
    /// routed again then.
    fn changes_in(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A choice's entries keyed by service, each name checked.
pub fn by_service<V>(entries: BTreeMap<String, V>) -> Result<BTreeMap<ServiceName, V>, String> {
    entries
        .into_iter()
        .map(|(service, value)| {
            let name = ServiceName::parse(&service).map_err(|reason| format!("service {service:?}: {reason}"))?;
            Ok((name, value))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid, fix or delete it ({without_it}): {reason}")]
    Invalid {
        path: String,
        reason: String,
        without_it: &'static str,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

pub fn path<C: Choice>(state_dir: &Path) -> PathBuf {
    state_dir.join(C::FILE)
}

/// The choice on disk; a missing file is the default.
pub fn load<C: Choice>(state_dir: &Path) -> Result<C, StateFileError> {
    let path = path::<C>(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => C::parse(&text).map_err(|reason| StateFileError::Invalid {
            path: path.display().to_string(),
            reason,
            without_it: C::WITHOUT_IT,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(C::default()),
        Err(source) => Err(StateFileError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Loads the choice, lets `edit` change it and writes it back, all under
/// a lock file, so two concurrent edits give both, never one lost.
pub fn edit<C: Choice, R>(state_dir: &Path, edit: impl FnOnce(&mut C) -> R) -> Result<R, StateFileError> {
    locked(state_dir, C::FILE, || {
        let mut choice = load::<C>(state_dir)?;
        let result = edit(&mut choice);
        let path = path::<C>(state_dir);
        write_atomic(&path, choice.to_json().as_bytes()).map_err(|e| write_error(&path, e))?;
        Ok(result)
    })
}

/// Runs `cycle` (a read-edit-write of `state_dir/file`) holding the lock
/// file beside it, `NAME.lock`, creating the state dir when missing.
pub fn locked<R>(
    state_dir: &Path,
    file: &str,
    cycle: impl FnOnce() -> Result<R, StateFileError>,
) -> Result<R, StateFileError> {
    crate::apply::create_private_dir(state_dir).map_err(|e| write_error(state_dir, e))?;
    let lock_path = state_dir.join(file).with_extension("lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| write_error(&lock_path, e))?;
    // Released when `lock` is dropped (or the process dies).
    lock.lock().map_err(|e| write_error(&lock_path, e))?;
    cycle()
}

pub fn write_error(path: &Path, source: std::io::Error) -> StateFileError {
    StateFileError::Write {
        path: path.display().to_string(),
        source,
    }
}

pub type Snapshots = watch::Receiver<Option<Arc<Snapshot>>>;

async fn sleep_for(wait: Option<std::time::Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// `teal run`: routes every snapshot of `model` through the choice in its
/// file, again on each of its `edits` (a watch on [`path`]). Fails when the
/// file is not valid at start: guessing could send traffic where the
/// operator said not to. An edit that is not valid is refused, logged, and
/// the last choice stays.
pub fn route_snapshots<C: Choice>(
    state_dir: &Path,
    mut model: Snapshots,
    mut edits: mpsc::Receiver<()>,
) -> Result<Snapshots, StateFileError> {
    let mut choice = load::<C>(state_dir)?;
    if choice != C::default() {
        let compact: String = choice.to_json().split_whitespace().collect();
        tracing::info!(file = C::FILE, choice = %compact, "loaded");
    }
    choice.taken_up(state_dir);
    let (routed_tx, routed) = watch::channel(None);
    let state_dir = state_dir.to_owned();
    tokio::spawn(async move {
        loop {
            let changes_by_itself = choice.changes_in();
            tokio::select! {
                changed = model.changed() => if changed.is_err() { break },
                Some(()) = edits.recv() => match load::<C>(&state_dir) {
                    Ok(next) if next == choice => continue,
                    Ok(next) => {
                        next.log_edit(&choice);
                        next.taken_up(&state_dir);
                        choice = next;
                    }
                    Err(error) => {
                        tracing::error!(%error, "edit refused; routing stays as it was");
                        continue;
                    }
                },
                () = sleep_for(changes_by_itself) => {}
            }
            let routed = model
                .borrow_and_update()
                .as_ref()
                .map(|snapshot| match choice.changes(snapshot) {
                    true => Arc::new(choice.route(Snapshot::clone(snapshot))),
                    false => snapshot.clone(),
                });
            routed_tx.send_replace(routed);
            // A churn keeps `model` changed: let the next stage run.
            tokio::task::yield_now().await;
        }
    });
    Ok(routed)
}
