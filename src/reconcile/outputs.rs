//! Where the apply loop reports what it did: `/status` and the metrics.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::apply::ApplyError;
use crate::status::{ApplyRecord, Metrics, ResultLabel};

use super::Outcome;

pub struct ApplyOutputs {
    pub last_apply: watch::Sender<Option<ApplyRecord>>,
    pub metrics: Arc<Metrics>,
}

impl ApplyOutputs {
    /// `started`: when the apply began; `changed_at`: when the change that
    /// led to it was seen.
    pub fn observe(&self, result: &Result<Outcome, ApplyError>, started: Instant, changed_at: Instant) {
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
        self.record(result.as_ref().map(|o| o.word()).map_err(|e| e.to_string()));
    }

    pub fn record(&self, result: Result<&'static str, String>) {
        self.publish(result, false);
    }

    /// A refusal left out alone: the error stands until something else is
    /// applied, but HAProxy runs everything else teal saw.
    pub fn record_left_out(&self, error: String) {
        self.publish(Err(error), true);
    }

    fn publish(&self, result: Result<&'static str, String>, left_out: bool) {
        self.last_apply.send_replace(Some(ApplyRecord {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ok: result.is_ok(),
            outcome: result.as_ref().ok().map(|o| o.to_string()),
            error: result.err(),
            left_out,
        }));
    }
}
