//! The driver's apply with failure isolation (`crate::isolate`): services
//! HAProxy refused are held back, a refused config is narrowed to the
//! services responsible and the rest applied, and a refused template or
//! certificate edit leaves the last good rendering in charge, so server
//! changes keep flowing through the runtime API.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::apply::ApplyError;
use crate::isolate::{self, Held, Narrowing, Refusal, Refusals, ServiceRefusal, Verdicts};
use crate::model::Snapshot;

use super::{Driver, Executor, Outcome, Reconciled, Rendering};

/// What the driver keeps to isolate failures.
pub struct Isolation {
    held: Held,
    verdicts: Verdicts,
    /// Texts `haproxy -c` accepted in this apply: not checked twice.
    accepted: Vec<String>,
    /// Bind each new listener before HAProxy is signalled: only where
    /// HAProxy shares teal's network (not `--reload container:`).
    preflight: bool,
    /// The rendering of the last apply that succeeded, kept for when an
    /// edit of the template or certificates is refused.
    good_rendering: Option<Rendering>,
    /// Why the last edit of the template or certificates was refused.
    rendering_refused: Option<String>,
    refusals: watch::Sender<Refusals>,
}

impl Isolation {
    pub fn new(preflight: bool, refusals: watch::Sender<Refusals>) -> Self {
        Self {
            held: Held::default(),
            verdicts: Verdicts::default(),
            accepted: Vec::new(),
            preflight,
            good_rendering: None,
            rendering_refused: None,
            refusals,
        }
    }

    /// `next` with the services refused before held back, if any, and the
    /// refusals that still hold.
    pub fn hold_back(&self, state: &Reconciled, next: &Arc<Snapshot>) -> (Arc<Snapshot>, Vec<Refusal>) {
        if self.held.is_empty() {
            return (next.clone(), Vec::new());
        }
        let good = state.applied().map(|a| a.snapshot.clone()).unwrap_or_default();
        let (candidate, refusals) = self.held.hold_back(&good, next, Instant::now());
        (Arc::new(candidate), refusals)
    }

    /// When a held service's changed input may be tried again.
    pub fn next_retry(&self, next: Option<&Snapshot>) -> Option<Instant> {
        next.and_then(|next| self.held.next_retry(next))
    }

    /// A template edit that does not even parse: the previous template keeps
    /// rendering, and `/status` says why until an edit is applied.
    pub fn template_unparsable(&mut self, reason: String) {
        self.rendering_refused = Some(reason);
    }

    /// The template or certificates changed: what was refused may load now.
    pub fn rendering_edited(&mut self) {
        self.held.clear();
    }
}

impl<E: Executor> Driver<E> {
    /// Applies `candidate` (the model's `next` with held services held
    /// back); when HAProxy refuses it, applies what it accepts of it.
    pub(super) async fn apply_isolated(
        &mut self,
        state: &mut Reconciled,
        next: &Arc<Snapshot>,
        candidate: Arc<Snapshot>,
        held: Vec<Refusal>,
        text: String,
    ) -> Result<Outcome, ApplyError> {
        self.isolation.accepted.clear();
        let result = match self.apply(state, candidate.clone(), text).await {
            Err(ApplyError::Rejected(refusal)) => self.narrowed(state, candidate, refusal).await,
            other => other.map(|outcome| (outcome, Vec::new())),
        };
        let (outcome, refused) = match result {
            Ok(done) => done,
            Err(error) => {
                self.publish(state, next, &held);
                return Err(error);
            }
        };
        let mut refusals = held;
        refusals.extend(refused);
        self.isolation.held.settle(next, &refusals, Instant::now());
        if self.isolation.good_rendering.as_ref().map(Rendering::id) != Some(self.rendering.id()) {
            self.isolation.good_rendering = Some(self.rendering.clone());
            self.isolation.rendering_refused = None;
        }
        self.publish(state, next, &refusals);
        Ok(outcome)
    }

    /// `candidate` was refused: applies it without the services responsible,
    /// or, when even the last good services are refused now, with the last
    /// good rendering.
    async fn narrowed(
        &mut self,
        state: &mut Reconciled,
        candidate: Arc<Snapshot>,
        refusal: String,
    ) -> Result<(Outcome, Vec<Refusal>), ApplyError> {
        let metrics = self.outputs.metrics.clone();
        metrics.validation_failures.inc();
        let good = state.applied().map(|a| a.snapshot.clone()).unwrap_or_default();
        let running = state.applied().map(|a| a.text.clone());
        let running = running.or_else(|| self.executor.running_text());
        let mut narrowing = Narrowing::new((*good).clone(), (*candidate).clone(), refusal.clone());
        while let Some(question) = narrowing.question() {
            let verdict = match self.rendering.render(&question) {
                // HAProxy runs it.
                Ok(text) if running.as_deref() == Some(text.as_str()) => Ok(()),
                Ok(text) => self.check(running.as_deref(), &text).await.map_err(|e| match e {
                    ApplyError::Rejected(reason) => reason,
                    other => other.to_string(),
                }),
                Err(error) => Err(error.to_string()),
            };
            narrowing.answer(verdict);
        }
        let narrowed = narrowing.finish();
        let Some(narrowed) = narrowed else {
            return self.rendering_refused(state, candidate, refusal).await;
        };
        for refused in &narrowed.refused {
            tracing::error!(service = %refused.service, reason = %refused.reason, "HAProxy refused this service; it is left out, every other change is applied");
        }
        // Until something else is applied, the last apply is this refusal.
        let services: Vec<String> = narrowed
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.service, r.reason))
            .collect();
        self.outputs.record_left_out(format!(
            "haproxy refused service {}; every other change is applied",
            services.join("; service ")
        ));
        let text = self
            .rendering
            .render(&narrowed.snapshot)
            .map_err(|e| ApplyError::Rejected(e.to_string()))?;
        let outcome = self.apply(state, Arc::new(narrowed.snapshot), text).await?;
        Ok((outcome, narrowed.refused))
    }

    /// Even the services HAProxy runs are refused with the current rendering:
    /// an edit of the template or certificates is at fault. The last good
    /// rendering stays in charge, so server changes keep flowing.
    async fn rendering_refused(
        &mut self,
        state: &mut Reconciled,
        candidate: Arc<Snapshot>,
        refusal: String,
    ) -> Result<(Outcome, Vec<Refusal>), ApplyError> {
        let Some(good) = self
            .isolation
            .good_rendering
            .clone()
            .filter(|good| good.id() != self.rendering.id())
        else {
            if state.applied().is_none() && self.isolation.preflight {
                // Nothing serves yet, so a start that fails pauses nothing:
                // HAProxy is started anyway (the supervisor retries it
                // until, say, the port held is freed).
                tracing::warn!(reason = %isolate::alert_reason(&refusal), "HAProxy may not start on this config; starting it anyway");
                self.isolation.preflight = false;
                let text = self
                    .rendering
                    .render(&candidate)
                    .map_err(|e| ApplyError::Rejected(e.to_string()));
                let result = match text {
                    Ok(text) => self.apply(state, candidate, text).await,
                    Err(error) => Err(error),
                };
                self.isolation.preflight = true;
                return result.map(|outcome| (outcome, Vec::new()));
            }
            return Err(ApplyError::Rejected(refusal));
        };
        let reason = isolate::alert_reason(&refusal);
        tracing::error!(%reason, "HAProxy refused the edited template or certificates; the last good ones keep rendering, server changes still apply");
        self.outputs.record_left_out(format!(
            "haproxy refused the edited template or certificates, the last good ones keep rendering: {reason}"
        ));
        self.isolation.rendering_refused = Some(reason);
        self.rendering = good;
        let text = self
            .rendering
            .render(&candidate)
            .map_err(|e| ApplyError::Rejected(e.to_string()))?;
        match self.apply(state, candidate.clone(), text).await {
            Err(ApplyError::Rejected(refusal)) => Box::pin(self.narrowed(state, candidate, refusal)).await,
            other => other.map(|outcome| (outcome, Vec::new())),
        }
    }

    /// `haproxy -c` and the pre-flight checks on `text`; `running`: the
    /// text HAProxy runs. A refusal is remembered: the same text is never
    /// checked twice.
    pub(super) async fn check(&mut self, running: Option<&str>, text: &str) -> Result<(), ApplyError> {
        let isolation = &mut self.isolation;
        if isolation.accepted.iter().any(|t| t == text) {
            return Ok(());
        }
        if let Some(Err(reason)) = isolation.verdicts.get(text) {
            return Err(ApplyError::Rejected(reason));
        }
        // With none running, a taken port fails HAProxy's start, which the
        // supervisor retries until it clears: no verdict to remember.
        if isolation.preflight && running.is_some() {
            isolate::check_binds(running, text).map_err(ApplyError::Rejected)?;
        }
        match self.executor.validate(text).await {
            Ok(()) => {
                self.isolation.accepted.push(text.to_owned());
                Ok(())
            }
            Err(ApplyError::Rejected(reason)) => {
                self.isolation.verdicts.insert(text, Err(reason.clone()));
                Err(ApplyError::Rejected(reason))
            }
            Err(other) => Err(other),
        }
    }

    /// What is refused now, for `/status` and the metrics.
    fn publish(&self, state: &Reconciled, next: &Snapshot, refusals: &[Refusal]) {
        let applied = state.applied().map(|a| a.snapshot.clone()).unwrap_or_default();
        let certificates = self
            .rendering
            .context()
            .tls
            .as_ref()
            .map(|tls| tls.refused.clone())
            .unwrap_or_default();
        let now = Refusals {
            services: refusals
                .iter()
                .map(|r| ServiceRefusal {
                    service: r.service.to_string(),
                    reason: r.reason.clone(),
                })
                .collect(),
            certificates,
            rendering: self.isolation.rendering_refused.clone(),
            excluded: isolate::left_out(next, &applied, refusals),
        };
        let metrics = &self.outputs.metrics;
        metrics.services_refused.set(now.services.len() as i64);
        metrics.certificates_refused.set(now.certificates.len() as i64);
        self.isolation.refusals.send_if_modified(|before| {
            let changed = *before != now;
            *before = now;
            changed
        });
    }
}
