//! `--certs DIR`: the certificates HAProxy serves by SNI, and a watch on them.
//!
//! HAProxy reads the directory itself (`bind ... ssl crt DIR`) and picks a
//! certificate by the client's SNI, the first file being the default. teal
//! only lists the files, with a digest of each, in the template context: a
//! new or replaced certificate changes the rendered config, and the usual
//! validate-then-reload puts it in service. Nothing restarts.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// One file of the certificate directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// The file name, with anything outside `A-Z a-z 0-9 . _ - + @` shown as
    /// `_`: file names are not trusted to be safe in haproxy.cfg.
    pub file: String,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the certificate directory {dir} (--certs): {source}")]
pub struct CertsError {
    pub dir: String,
    pub source: std::io::Error,
}

/// The files HAProxy loads from `dir`: every regular file but dotfiles
/// (which HAProxy skips, as editors' temp files usually are), by name.
pub fn scan(dir: &Path) -> Result<Vec<Certificate>, CertsError> {
    let error = |source| CertsError {
        dir: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Follows symlinks, as HAProxy does (Kubernetes-style `..data` links).
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let contents = match std::fs::read(entry.path()) {
            Ok(contents) => contents,
            // Deleted between the listing and the read: the next event rescans.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error(e)),
        };
        files.push((name.into_owned(), contents));
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|(name, contents)| Certificate {
            file: safe_name(&name),
            sha256: hex(&Sha256::digest(&contents)),
        })
        .collect())
}

fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `()` whenever something in `dir` changes. Keep the watcher alive
/// as long as changes should be seen.
pub fn watch(dir: &Path, changes: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir: PathBuf = std::path::absolute(dir).with_context(|| format!("bad --certs path {}", dir.display()))?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending rescan.
            let _ = changes.try_send(());
        }
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {} for certificate changes", dir.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_with_digests_and_skips_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.example.pem"), "B").unwrap();
        std::fs::write(dir.path().join("a.example.pem"), "A").unwrap();
        std::fs::write(dir.path().join(".a.example.pem.swp"), "junk").unwrap();
        std::fs::write(dir.path().join("odd name\n.pem"), "C").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let certs = scan(dir.path()).unwrap();
        let files: Vec<&str> = certs.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(files, ["a.example.pem", "b.example.pem", "odd_name_.pem"]);
        // sha256("A")
        assert_eq!(
            certs[0].sha256,
            "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd"
        );
        std::fs::write(dir.path().join("a.example.pem"), "A2").unwrap();
        assert_ne!(scan(dir.path()).unwrap()[0].sha256, certs[0].sha256);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let error = scan(Path::new("/nonexistent/teal-certs")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/teal-certs"));
    }
}
