//! The files `teal run` follows (`--template`, `--certs`, `slots.json`):
//! one watcher, debounced by `notify-debouncer-full`, so a burst of writes
//! (an editor's truncate, write and rename) is one wake-up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

/// How long a directory must be quiet before its changes are sent. Short:
/// a `teal switch` waits for it.
const QUIET_FOR: Duration = Duration::from_millis(50);

/// Keep it alive as long as changes should be seen.
pub struct Watches {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    routes: Arc<Mutex<Vec<Route>>>,
}

/// Files of `dir` for which `wanted` holds: a change to one sends `()`.
struct Route {
    dir: PathBuf,
    wanted: Box<dyn Fn(&Path) -> bool + Send>,
    changes: mpsc::Sender<()>,
}

impl Watches {
    pub fn new() -> anyhow::Result<Self> {
        let routes: Arc<Mutex<Vec<Route>>> = Arc::default();
        let shared = routes.clone();
        let debouncer = new_debouncer(QUIET_FOR, None, move |result: DebounceEventResult| {
            let Ok(events) = result else {
                return; // Lost events: the next change is seen all the same.
            };
            let routes = shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for route in routes.iter() {
                let hit = events.iter().filter(|e| !e.kind.is_access()).any(|event| {
                    event
                        .paths
                        .iter()
                        .any(|p| p.parent() == Some(route.dir.as_path()) && (route.wanted)(p))
                });
                if hit {
                    // A full channel already holds a pending change.
                    let _ = route.changes.try_send(());
                }
            }
        })
        .context("cannot start watching files")?;
        Ok(Self { debouncer, routes })
    }

    /// Changes to the file at `path`. Editors and `write_atomic` replace
    /// files rather than write them, so its directory is watched and the
    /// name picked out.
    pub fn file(&mut self, path: &Path) -> anyhow::Result<mpsc::Receiver<()>> {
        let path = std::path::absolute(path).with_context(|| format!("bad path {}", path.display()))?;
        let dir = path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        let name = path.file_name().map(|n| n.to_owned());
        self.dir(&dir, move |p| p.file_name() == name.as_deref())
    }

    /// Changes to files of `dir` for which `wanted` holds.
    pub fn dir(
        &mut self,
        dir: &Path,
        wanted: impl Fn(&Path) -> bool + Send + 'static,
    ) -> anyhow::Result<mpsc::Receiver<()>> {
        let dir = std::path::absolute(dir).with_context(|| format!("bad path {}", dir.display()))?;
        self.debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {} for changes", dir.display()))?;
        let (changes, receiver) = mpsc::channel(1);
        let route = Route {
            dir,
            wanted: Box::new(wanted),
            changes,
        };
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(route);
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn changed(receiver: &mut mpsc::Receiver<()>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_replaced_file_is_one_change_and_its_neighbours_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg.hbs");
        std::fs::write(&path, "one").unwrap();
        let mut watches = Watches::new().unwrap();
        let mut edits = watches.file(&path).unwrap();
        let mut all = watches.dir(dir.path(), |_| true).unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        assert!(changed(&mut all).await);
        assert!(edits.try_recv().is_err(), "another file is not an edit");
        // An editor's save: write a temp file, rename it over.
        let temp = dir.path().join(".haproxy.cfg.hbs.swp");
        std::fs::write(&temp, "two").unwrap();
        std::fs::rename(&temp, &path).unwrap();
        assert!(changed(&mut edits).await);
        tokio::time::sleep(QUIET_FOR * 4).await;
        assert!(edits.try_recv().is_err(), "one save, one change");
    }
}
