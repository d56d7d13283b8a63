//! File watches that wake the reconcile loop.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use notify::Watcher as _;
use tokio::sync::mpsc;

/// Sends `()` when the file at `path` changes. Editors replace files rather
/// than write them, so the directory is watched and the name picked out.
/// Keep the watcher alive as long as edits should be seen.
pub fn file(path: &Path, edits: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let path = std::path::absolute(path).with_context(|| format!("bad path {}", path.display()))?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.paths.iter().any(|p| p.file_name() == name.as_deref()) && !event.kind.is_access() {
                // A full channel already holds a pending edit.
                let _ = edits.try_send(());
            }
        }
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {} for edits of {}", dir.display(), path.display()))?;
    Ok(watcher)
}
