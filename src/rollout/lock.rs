//! One rollout per service at a time, and what a crashed one left behind.
//!
//! The lock is an exclusive `flock` on `<state-dir>/rollout.<prefix>.<service>.lock`:
//! the kernel drops it when the process dies, however it dies, so a crash
//! never leaves a stale lock. The file also holds the rollout's journal
//! (its pid, phase and containers), rewritten at each phase and emptied at
//! the end. A rollout that finds a journal left in the file knows that the
//! previous one crashed, and in which phase.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Replacements are being started; the old containers are untouched.
    Start,
    /// Every replacement was UP; the old containers are being stopped.
    Drain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    pub phase: Phase,
    /// Container ids.
    pub old: Vec<String>,
    pub new: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another rollout of {service} is running{holder}; wait for it to finish (or stop it: it rolls back)")]
    Busy { service: String, holder: String },
    #[error("cannot use the rollout lock {path}: {source} (is --state-dir writable?)")]
    Io { path: String, source: std::io::Error },
}

/// Held for the whole rollout; dropping it releases the lock.
pub struct RolloutLock {
    file: File,
    path: PathBuf,
}

impl RolloutLock {
    /// Takes the lock without waiting. With it comes the journal of a
    /// previous rollout that did not finish, if any.
    pub fn acquire(state_dir: &Path, label_prefix: &str, service: &str) -> Result<(Self, Option<Journal>), LockError> {
        let path = state_dir.join(format!("rollout.{label_prefix}.{service}.lock"));
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        crate::apply::create_private_dir(state_dir).map_err(io)?;
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = match read_journal(&mut file) {
                    Some(j) => format!(
                        " (pid {}, started {}s ago)",
                        j.pid,
                        unix_now().saturating_sub(j.started)
                    ),
                    None => String::new(),
                };
                return Err(LockError::Busy {
                    service: service.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let left = read_journal(&mut file);
        Ok((Self { file, path }, left))
    }

    /// Rewrites the journal; on disk before the step it describes starts.
    pub fn record(&mut self, journal: &Journal) -> Result<(), LockError> {
        let text = serde_json::to_string(journal).unwrap_or_default();
        self.rewrite(text.as_bytes())
    }

    /// Empties the journal: nothing is left to clean up.
    pub fn finish(mut self) -> Result<(), LockError> {
        self.rewrite(b"")
    }

    /// Overwrites in place, then cuts what is left of a longer journal: a
    /// second rollout reading the file meanwhile never finds it empty (as
    /// it would between a truncate and the write).
    fn rewrite(&mut self, bytes: &[u8]) -> Result<(), LockError> {
        let result = (|| {
            self.file.write_all_at(bytes, 0)?;
            self.file.set_len(bytes.len() as u64)?;
            self.file.sync_data()
        })();
        result.map_err(|source| LockError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

impl Drop for RolloutLock {
    /// Unlocks explicitly rather than by closing: a process forked meanwhile
    /// (by another thread, before its exec) holds a copy of the descriptor,
    /// and with it the lock, until it execs. Seen as a unit-test flake.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn read_journal(file: &mut File) -> Option<Journal> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(phase: Phase) -> Journal {
        Journal {
            pid: 42,
            started: unix_now(),
            phase,
            old: vec!["a".into()],
            new: vec!["b".into()],
        }
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, left) = RolloutLock::acquire(dir.path(), "teal", "web").unwrap();
        assert!(left.is_none());
        first.record(&journal(Phase::Start)).unwrap();
        let err = RolloutLock::acquire(dir.path(), "teal", "web")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another rollout of web is running (pid 42"), "{err}");
        // Other services and prefixes are independent.
        assert!(RolloutLock::acquire(dir.path(), "teal", "api").is_ok());
        assert!(RolloutLock::acquire(dir.path(), "other", "web").is_ok());
    }

    #[test]
    fn a_crashed_rollout_leaves_its_journal_and_a_finished_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lock, _) = RolloutLock::acquire(dir.path(), "teal", "web").unwrap();
        lock.record(&journal(Phase::Drain)).unwrap();
        drop(lock); // what a crash does: the kernel releases the flock
        let (lock, left) = RolloutLock::acquire(dir.path(), "teal", "web").unwrap();
        let left = left.expect("the journal of the crashed rollout");
        assert_eq!(
            (left.phase, left.old, left.new),
            (Phase::Drain, vec!["a".into()], vec!["b".into()])
        );
        lock.finish().unwrap();
        let (_lock, left) = RolloutLock::acquire(dir.path(), "teal", "web").unwrap();
        assert!(left.is_none());
    }
}
