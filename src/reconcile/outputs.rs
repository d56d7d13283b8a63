//! Where the apply loop reports what it did: `/status` and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use crate::apply::ApplyError;
use crate::model::{Controls, Snapshot, StickyCanary};
use crate::status::{ApplyRecord, Metrics, ResultLabel};

use super::Outcome;

pub struct ApplyOutputs {
    pub last_apply: watch::Sender<Option<ApplyRecord>>,
    pub metrics: Arc<Metrics>,
}

impl ApplyOutputs {
    /// `applied`: the snapshot applied; `started`: when the apply began;
    /// `changed_at`: when the change that led to it was seen.
    pub fn observe(
        &self,
        result: &Result<Outcome, ApplyError>,
        applied: &Snapshot,
        started: Instant,
        changed_at: Instant,
    ) {
        let metrics = &self.metrics;
        let ok = ResultLabel { result: "ok" };
        let failed = ResultLabel { result: "failed" };
        match result {
            Ok(Outcome::Unchanged) => return,
            Ok(outcome) => {
                tracing::info!(?outcome, took = ?started.elapsed(), "config applied");
                match outcome {
                    Outcome::Runtime(n) => metrics.runtime_updates.get_or_create(&ok).inc_by(*n as u64),
                    _ => metrics.reloads.get_or_create(&ok).inc(),
                };
                metrics.event_to_apply.observe(changed_at.elapsed().as_secs_f64());
            }
            Err(error) => {
                tracing::error!(%error, "config not applied");
                match error {
                    ApplyError::Rejected(_) => metrics.validation_failures.inc(),
                    _ => metrics.reloads.get_or_create(&failed).inc(),
                };
            }
        }
        metrics.reload_duration.observe(started.elapsed().as_secs_f64());
        let loaded = matches!(result, Ok(Outcome::Reloaded | Outcome::Started));
        let result = result.as_ref().map(|o| o.word()).map_err(|e| e.to_string());
        self.publish(result, false, loaded.then_some(applied));
    }

    pub fn record(&self, result: Result<&'static str, String>) {
        self.publish(result, false, None);
    }

    /// A refusal left out alone: the error stands until something else is
    /// applied, but HAProxy runs everything else teal saw.
    pub fn record_left_out(&self, error: String) {
        self.publish(Err(error), true, None);
    }

    /// `loaded`: the snapshot of the config HAProxy just loaded, whose
    /// controls and canary headers now hold; `None`: those of the last one
    /// loaded still do.
    fn publish(&self, result: Result<&'static str, String>, left_out: bool, loaded: Option<&Snapshot>) {
        let (controls, sticky_canaries) = match loaded {
            Some(snapshot) => (controls_of(snapshot), sticky_canaries_of(snapshot)),
            None => self
                .last_apply
                .borrow()
                .as_ref()
                .map(|r| (r.controls.clone(), r.sticky_canaries.clone()))
                .unwrap_or_default(),
        };
        self.last_apply.send_replace(Some(ApplyRecord {
            time: rfc3339(SystemTime::now()),
            ok: result.is_ok(),
            outcome: result.as_ref().ok().map(|o| o.to_string()),
            error: result.err(),
            left_out,
            controls,
            sticky_canaries,
        }));
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The services of `snapshot` with a maintenance or pause set.
fn controls_of(snapshot: &Snapshot) -> BTreeMap<String, Controls> {
    snapshot
        .services
        .iter()
        .filter(|s| s.controls != Controls::default())
        .map(|s| (s.name.to_string(), s.controls.clone()))
        .collect()
}

/// The services of `snapshot` whose canary routes a header.
fn sticky_canaries_of(snapshot: &Snapshot) -> BTreeMap<String, StickyCanary> {
    snapshot
        .services
        .iter()
        .filter_map(|s| Some((s.name.to_string(), s.sticky_canary()?)))
        .collect()
}
