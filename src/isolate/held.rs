//! Services HAProxy refused, held back until their input changes; a changed
//! input is tried again, with a growing wait between tries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{candidate, left_out, Refusal};
use crate::model::labels::ServiceName;
use crate::model::{Service, Snapshot};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Held {
    services: BTreeMap<ServiceName, HeldService>,
}

#[derive(Debug)]
struct HeldService {
    /// The form HAProxy refused.
    form: Arc<Service>,
    reason: String,
    refusals: u32,
    retry_at: Instant,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// `next` with each held service as in `good`, unless its input changed
    /// and its wait is over (then it is tried again); the containers this
    /// leaves out are in `excluded`. Also the refusals that still hold.
    pub fn hold_back(&self, good: &Snapshot, next: &Snapshot, now: Instant) -> (Snapshot, Vec<Refusal>) {
        let refusals: Vec<Refusal> = self
            .services
            .iter()
            .filter(|(name, held)| match next.services.iter().find(|s| &s.name == *name) {
                Some(form) => *form == held.form || now < held.retry_at,
                None => false, // Gone: nothing to hold.
            })
            .map(|(name, held)| Refusal {
                service: name.clone(),
                reason: held.reason.clone(),
            })
            .collect();
        let out: BTreeSet<&ServiceName> = refusals.iter().map(|r| &r.service).collect();
        let take = next
            .services
            .iter()
            .map(|s| s.name.clone())
            .filter(|name| !out.contains(name))
            .collect();
        let mut snapshot = candidate(good, next, &take);
        snapshot.excluded.extend(left_out(next, &snapshot, &refusals));
        snapshot
            .excluded
            .sort_by(|a, b| a.container_name.cmp(&b.container_name));
        (snapshot, refusals)
    }

    /// When a held service whose input changed may be tried again: the
    /// caller wakes then.
    pub fn next_retry(&self, next: &Snapshot) -> Option<Instant> {
        self.services
            .iter()
            .filter(|(name, held)| {
                next.services
                    .iter()
                    .find(|s| &s.name == *name)
                    .is_some_and(|form| *form != held.form)
            })
            .map(|(_, held)| held.retry_at)
            .min()
    }

    /// After an apply of `next` with `refusals` (those held back and those
    /// newly found): the refused are held, the others forgotten. A service
    /// refused again in a new form waits twice as long as before.
    pub fn settle(&mut self, next: &Snapshot, refusals: &[Refusal], now: Instant) {
        let mut services = BTreeMap::new();
        for refusal in refusals {
            let Some(form) = next.services.iter().find(|s| s.name == refusal.service) else {
                continue;
            };
            let held = match self.services.remove(&refusal.service) {
                Some(held) if held.form == *form || now < held.retry_at => held,
                Some(held) => refused(form, refusal, held.refusals + 1, now),
                None => refused(form, refusal, 1, now),
            };
            services.insert(refusal.service.clone(), held);
        }
        self.services = services;
    }

    /// The template or certificates changed: every held service may load
    /// now, so each is tried again.
    pub fn clear(&mut self) {
        self.services.clear();
    }
}

fn refused(form: &Arc<Service>, refusal: &Refusal, refusals: u32, now: Instant) -> HeldService {
    let wait = FIRST_RETRY
        .saturating_mul(1 << (refusals - 1).min(16))
        .min(LONGEST_RETRY);
    HeldService {
        form: form.clone(),
        reason: refusal.reason.clone(),
        refusals,
        retry_at: now + wait,
    }
}
