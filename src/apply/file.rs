//! Atomic file replacement: readers see the old file or the new one, whole.
//! Modes are set explicitly: what teal writes does not follow its umask.

use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Files teal writes: HAProxy (perhaps in another container, as another
/// user) reads them; nobody else writes them.
const FILE_MODE: u32 = 0o644;

/// Creates `dir` (and its missing parents) readable by its owner only: the
/// state dir holds HAProxy's admin and master sockets. An existing
/// directory keeps its mode: the user chose it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it
/// over `path` and fsyncs the directory. The file is 0644.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, FILE_MODE, true)
}

/// [`write_atomic`] for secrets (private keys, the ACME account): 0600,
/// never readable by anyone else, not even for a moment.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, 0o600, true)
}

/// [`write_atomic`] without the fsyncs: readers still see the old file or
/// the new one, whole, but a power loss may keep the old one. For files
/// rewritten on every change that teal renders anew at start anyway: on a
/// busy disk the two fsyncs of a 600 KiB config took hundreds of
/// milliseconds, and the next change waited for them.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, FILE_MODE, false)
}

fn write_with(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&temp, path)?;
        if sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        write_atomic(&path, b"one").unwrap();
        write_atomic_unsynced(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn secrets_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"secret").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn private_dir_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        create_private_dir(&state).unwrap();
        create_private_dir(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
