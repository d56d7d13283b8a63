//! One bad thing never stops the rest: when HAProxy refuses a config, find
//! the service(s) responsible and apply everything else.
//!
//! [`Narrowing`] is pure: it asks its caller to validate candidates (render
//! plus `haproxy -c` plus the pre-flight checks, in `teal run`; a fake in
//! tests). It only ever tries services as they are in the last good
//! snapshot or in the next one, so the snapshot it returns is one the
//! validator accepted.

mod held;
mod preflight;
mod verdicts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::labels::ServiceName;
use crate::model::{Excluded, Service, Snapshot};
use crate::tls::RefusedCertificate;

pub use held::Held;
pub use preflight::check_binds;
pub use verdicts::Verdicts;

/// A service HAProxy refused, and HAProxy's own words for why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub service: ServiceName,
    pub reason: String,
}

/// What HAProxy refuses now and teal leaves out, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Refusals {
    pub services: Vec<ServiceRefusal>,
    /// Files of `--certs` HAProxy cannot load.
    pub certificates: Vec<RefusedCertificate>,
    /// Why the last edit of the template (or certificates) was refused,
    /// while the one before it keeps rendering.
    pub rendering: Option<String>,
    /// The refused services' containers, listed with the others left out.
    #[serde(skip)]
    pub excluded: Vec<Excluded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRefusal {
    pub service: String,
    /// HAProxy's alert.
    pub reason: String,
}

/// What to apply when the next snapshot as a whole was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Narrowed {
    /// The next snapshot with each refused service as it is in the last
    /// good one (left out if it is new); its containers that this leaves
    /// unserved are listed in `excluded` with the reason.
    pub snapshot: Snapshot,
    pub refused: Vec<Refusal>,
}

/// Finds why `next` was refused, when `good` was not: the services
/// responsible. A question-and-answer loop, so any validator (async, a
/// whole HAProxy start-up; a fake in tests) can answer:
///
/// ```ignore
/// let mut narrowing = Narrowing::new(good, next, refusal);
/// while let Some(candidate) = narrowing.question() {
///     narrowing.answer(validate(&candidate).await);
/// }
/// let narrowed = narrowing.finish();
/// ```
///
/// `refusal` is the validator's error for `next`. The first question is
/// `good`'s services (every change left out): if even that is refused, the
/// fault lies with what renders them (template, certificates), and the
/// answer is `None`. Otherwise the changed services are bisected; several
/// may be refused, each with the error that adding it gave.
pub struct Narrowing {
    good: Snapshot,
    next: Snapshot,
    /// `None` until the first question (`good`'s services) is answered.
    base_accepted: Option<bool>,
    /// Changed services known to validate with each other.
    accepted: BTreeSet<ServiceName>,
    refused: Vec<Refusal>,
    /// Groups of suspects still to look at, the last first.
    work: Vec<(Vec<ServiceName>, Known)>,
    /// The group the question being answered adds to `accepted`.
    asking: Option<Vec<ServiceName>>,
}

/// What is known of `accepted` plus a group of suspects.
enum Known {
    Unknown,
    Refused(String),
    /// Refused with this, if every service of `first` was accepted (the
    /// group and `first` were refused together).
    RefusedIfAccepted {
        refusal: String,
        first: Vec<ServiceName>,
    },
}

impl Narrowing {
    pub fn new(good: Snapshot, next: Snapshot, refusal: String) -> Self {
        let changed = changed_services(&good, &next);
        Self {
            good,
            next,
            base_accepted: None,
            accepted: BTreeSet::new(),
            refused: Vec::new(),
            work: vec![(changed, Known::Refused(refusal))],
            asking: None,
        }
    }

    /// The next snapshot to validate; `None` once the answer is known.
    pub fn question(&mut self) -> Option<Snapshot> {
        match self.base_accepted {
            None => return Some(candidate(&self.good, &self.next, &BTreeSet::new())),
            Some(false) => return None,
            Some(true) => {}
        }
        if let Some(group) = &self.asking {
            return Some(self.with_accepted(group));
        }
        while let Some((group, known)) = self.work.pop() {
            let known = match known {
                Known::Unknown => None,
                Known::Refused(refusal) => Some(refusal),
                Known::RefusedIfAccepted { refusal, first } => {
                    first.iter().all(|s| self.accepted.contains(s)).then_some(refusal)
                }
            };
            match known {
                _ if group.is_empty() => {}
                Some(refusal) => self.blame(group, refusal),
                None => {
                    let question = self.with_accepted(&group);
                    self.asking = Some(group);
                    return Some(question);
                }
            }
        }
        None
    }

    /// The validator's verdict on the last question.
    pub fn answer(&mut self, verdict: Result<(), String>) {
        if self.base_accepted.is_none() {
            self.base_accepted = Some(verdict.is_ok());
            return;
        }
        let Some(group) = self.asking.take() else {
            return;
        };
        match verdict {
            Ok(()) => self.accepted.extend(group),
            Err(refusal) => self.blame(group, refusal),
        }
    }

    /// `accepted` plus `group` is refused with `refusal`.
    fn blame(&mut self, group: Vec<ServiceName>, refusal: String) {
        if let [only] = group.as_slice() {
            self.refused.push(Refusal {
                service: only.clone(),
                reason: alert_reason(&refusal),
            });
            return;
        }
        let (first, second) = group.split_at(group.len() / 2);
        self.work.push((
            second.to_vec(),
            Known::RefusedIfAccepted {
                refusal,
                first: first.to_vec(),
            },
        ));
        self.work.push((first.to_vec(), Known::Unknown));
    }

    fn with_accepted(&self, group: &[ServiceName]) -> Snapshot {
        let mut take = self.accepted.clone();
        take.extend(group.iter().cloned());
        candidate(&self.good, &self.next, &take)
    }

    /// What to apply, once [`Narrowing::question`] gives `None`; `None`
    /// when even `good`'s services were refused.
    pub fn finish(self) -> Option<Narrowed> {
        if self.base_accepted != Some(true) {
            return None;
        }
        let mut snapshot = candidate(&self.good, &self.next, &self.accepted);
        snapshot.excluded.extend(left_out(&self.next, &snapshot, &self.refused));
        snapshot
            .excluded
            .sort_by(|a, b| a.container_name.cmp(&b.container_name));
        Some(Narrowed {
            snapshot,
            refused: self.refused,
        })
    }
}

/// Services whose form differs between the two snapshots (added, removed
/// or changed), by name.
fn changed_services(good: &Snapshot, next: &Snapshot) -> Vec<ServiceName> {
    let (before, after) = (by_name(good), by_name(next));
    let names: BTreeSet<&ServiceName> = before.keys().chain(after.keys()).copied().collect();
    names
        .into_iter()
        .filter(|name| before.get(name) != after.get(name))
        .cloned()
        .collect()
}

fn by_name(snapshot: &Snapshot) -> BTreeMap<&ServiceName, &Arc<Service>> {
    snapshot.services.iter().map(|s| (&s.name, s)).collect()
}

/// `next`, but each service not in `take` as it is in `good` (absent if
/// `good` has none of that name).
pub fn candidate(good: &Snapshot, next: &Snapshot, take: &BTreeSet<ServiceName>) -> Snapshot {
    let (before, after) = (by_name(good), by_name(next));
    let names: BTreeSet<&ServiceName> = before.keys().chain(after.keys()).copied().collect();
    let services = names
        .into_iter()
        .filter_map(|name| {
            let form = if take.contains(name) || before.get(name) == after.get(name) {
                after.get(name)
            } else {
                before.get(name)
            };
            form.map(|s| Arc::clone(s))
        })
        .collect();
    Snapshot {
        services,
        excluded: next.excluded.clone(),
    }
}

/// The containers of each refused service in `next` that `applied` does
/// not serve, left out with the refusal as the reason.
pub fn left_out(next: &Snapshot, applied: &Snapshot, refused: &[Refusal]) -> Vec<Excluded> {
    // Without a refusal there is nothing to leave out, and no need to
    // gather every served container (10,000 at scale, at each apply).
    if refused.is_empty() {
        return Vec::new();
    }
    let served: BTreeSet<_> = applied
        .services
        .iter()
        .flat_map(|s| s.servers.iter().map(|server| &server.container_id))
        .collect();
    let mut excluded = Vec::new();
    for refusal in refused {
        let Some(service) = next.services.iter().find(|s| s.name == refusal.service) else {
            continue;
        };
        for server in service.servers.iter().filter(|s| !served.contains(&s.container_id)) {
            excluded.push(Excluded {
                container_id: server.container_id.clone(),
                container_name: server.container_name.clone(),
                reason: format!("HAProxy cannot load service {}: {}", refusal.service, refusal.reason),
            });
        }
    }
    excluded
}

/// `snapshot` as teal serves it: without the servers of refused services'
/// containers (listed in `excluded` instead), and without a refused
/// service left with no server.
pub fn as_served(snapshot: &Snapshot, refusals: &Refusals) -> Snapshot {
    if refusals.excluded.is_empty() {
        return snapshot.clone();
    }
    let out: BTreeSet<_> = refusals.excluded.iter().map(|e| &e.container_id).collect();
    let refused: BTreeSet<&str> = refusals.services.iter().map(|r| r.service.as_str()).collect();
    let mut served = snapshot.clone();
    // Only the services that lose a server are copied.
    for service in &mut served.services {
        if service.servers.iter().any(|s| out.contains(&s.container_id)) {
            Arc::make_mut(service)
                .servers
                .retain(|s| !out.contains(&s.container_id));
        }
    }
    served
        .services
        .retain(|s| !(s.servers.is_empty() && refused.contains(s.name.as_str())));
    served.excluded.extend(refusals.excluded.iter().cloned());
    served.excluded.sort_by(|a, b| a.container_name.cmp(&b.container_name));
    served
}

/// HAProxy's alerts without their `[ALERT] (pid) : config :` prefixes and
/// the closing lines that only say the config has errors.
pub fn alert_reason(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(|line| match line.find("[ALERT]") {
            Some(at) => {
                let rest = &line[at..];
                // `[ALERT]    (1234) : config : what` -> `what`
                rest.splitn(3, " : ").nth(2).unwrap_or(rest).trim()
            }
            None => line.trim(),
        })
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Error(s) found in configuration file")
                && !line.starts_with("Fatal errors found in configuration")
        })
        .collect();
    if lines.is_empty() {
        message.trim().to_owned()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests;
