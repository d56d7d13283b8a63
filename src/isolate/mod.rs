//! One bad thing never stops the rest: when HAProxy refuses a config, find
//! the service(s) responsible and apply everything else.
//!
//! [`narrow`] is pure but for the validator it is given (render plus
//! `haproxy -c` plus the pre-flight checks, in `teal run`; a fake in
//! tests). It only ever tries services as they are in the last good
//! snapshot or in the next one, so the snapshot it returns is one the
//! validator accepted.

mod held;
mod preflight;
mod verdicts;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::labels::ServiceName;
use crate::model::{Excluded, Service, Snapshot};

pub use held::Held;
pub use preflight::check_binds;
pub use verdicts::Verdicts;

/// A service HAProxy refused, and HAProxy's own words for why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub service: ServiceName,
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

/// Why `next` was refused, when `good` was not: the services responsible.
///
/// `refusal` is the validator's error for `next`. Validates `good`'s
/// services first (every change left out): if even that is refused, the
/// fault lies with what renders them (template, certificates), and the
/// answer is `None`. Otherwise the changed services are bisected; several
/// may be refused, each with the error that adding it gave.
pub async fn narrow<V>(good: &Snapshot, next: &Snapshot, refusal: String, mut validate: V) -> Option<Narrowed>
where
    V: AsyncFnMut(&Snapshot) -> Result<(), String>,
{
    let changed = changed_services(good, next);
    if validate(&candidate(good, next, &BTreeSet::new())).await.is_err() {
        return None;
    }
    let mut accepted = BTreeSet::new();
    let mut refused = Vec::new();
    find(
        good,
        next,
        &changed,
        &mut accepted,
        refusal,
        &mut validate,
        &mut refused,
    )
    .await;
    let mut snapshot = candidate(good, next, &accepted);
    snapshot.excluded.extend(left_out(next, &snapshot, &refused));
    snapshot
        .excluded
        .sort_by(|a, b| a.container_name.cmp(&b.container_name));
    Some(Narrowed { snapshot, refused })
}

/// Bisection. On entry `accepted` is known to validate and `accepted` plus
/// `suspects` is refused with `refusal`; on return `accepted` has grown by
/// every suspect that validates with it, and `refused` by the others.
async fn find<V>(
    good: &Snapshot,
    next: &Snapshot,
    suspects: &[ServiceName],
    accepted: &mut BTreeSet<ServiceName>,
    refusal: String,
    validate: &mut V,
    refused: &mut Vec<Refusal>,
) where
    V: AsyncFnMut(&Snapshot) -> Result<(), String>,
{
    if suspects.is_empty() {
        return; // A validator that changed its mind: nothing left to blame.
    }
    if let [only] = suspects {
        refused.push(Refusal {
            service: only.clone(),
            reason: alert_reason(&refusal),
        });
        return;
    }
    let (first, second) = suspects.split_at(suspects.len() / 2);
    let with = |accepted: &BTreeSet<ServiceName>, more: &[ServiceName]| {
        let mut names = accepted.clone();
        names.extend(more.iter().cloned());
        names
    };
    match validate(&candidate(good, next, &with(accepted, first))).await {
        Ok(()) => accepted.extend(first.iter().cloned()),
        Err(first_refusal) => {
            Box::pin(find(good, next, first, accepted, first_refusal, validate, refused)).await;
        }
    }
    // Known refused when the first half was all accepted.
    let second_refusal = if first.iter().all(|s| accepted.contains(s)) {
        Err(refusal)
    } else {
        validate(&candidate(good, next, &with(accepted, second))).await
    };
    match second_refusal {
        Ok(()) => accepted.extend(second.iter().cloned()),
        Err(second_refusal) => {
            Box::pin(find(good, next, second, accepted, second_refusal, validate, refused)).await;
        }
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

fn by_name(snapshot: &Snapshot) -> BTreeMap<&ServiceName, &Service> {
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
            form.map(|s| (*s).clone())
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
                reason: format!("HAProxy refused service {}: {}", refusal.service, refusal.reason),
            });
        }
    }
    excluded
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
