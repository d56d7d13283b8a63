//! The recent deploys, kept in `<state-dir>/deploys.json` by the commands
//! that made them, read by the daemon for `/status` (the last [`KEPT`]) and
//! `/metrics` (a count of every deploy by outcome).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DeployReport, Outcome};
use crate::state_file::{self, StateFileError};

pub const FILE: &str = "deploys.json";

/// How many reports the file keeps.
pub const KEPT: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deploys {
    /// Every deploy recorded, by outcome.
    pub counts: BTreeMap<Outcome, u64>,
    /// The last [`KEPT`], newest first.
    pub recent: Vec<DeployReport>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The file; missing is none yet.
pub fn load(state_dir: &Path) -> Result<Deploys, StateFileError> {
    let path = path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StateFileError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
            without_it: "the recent deploys and their counts start again",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deploys::default()),
        Err(source) => Err(StateFileError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Adds `report`, dropping the oldest beyond [`KEPT`].
pub fn append(state_dir: &Path, report: &DeployReport) -> Result<(), StateFileError> {
    state_file::locked(state_dir, FILE, || {
        let mut deploys = load(state_dir)?;
        *deploys.counts.entry(report.outcome).or_default() += 1;
        deploys.recent.insert(0, report.clone());
        deploys.recent.truncate(KEPT);
        let path = path(state_dir);
        let json = serde_json::to_string_pretty(&deploys).unwrap_or_default() + "\n";
        crate::apply::write_atomic(&path, json.as_bytes()).map_err(|e| state_file::write_error(&path, e))
    })
}

impl Outcome {
    pub fn count(self, deploys: &Deploys) -> u64 {
        deploys.counts.get(&self).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::Traffic;

    #[test]
    fn keeps_the_last_reports_and_counts_them_all() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..KEPT + 3 {
            let report = DeployReport {
                id: format!("{i:06x}"),
                service: "web".into(),
                kind: "rollout".into(),
                started: "2026-01-01T00:00:00Z".into(),
                duration_ms: 1,
                outcome: if i % 2 == 0 {
                    Outcome::Completed
                } else {
                    Outcome::RolledBack
                },
                reason: None,
                old: Traffic::default(),
                new: Traffic::default(),
                canary: None,
            };
            append(dir.path(), &report).unwrap();
        }
        let deploys = load(dir.path()).unwrap();
        assert_eq!(deploys.recent.len(), KEPT);
        assert_eq!(deploys.recent[0].id, format!("{:06x}", KEPT + 2));
        assert_eq!(
            (Outcome::Completed.count(&deploys), Outcome::RolledBack.count(&deploys)),
            (12, 11)
        );
    }
}
