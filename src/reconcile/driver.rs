//! The reconcile loop: takes each new snapshot, template edit or
//! certificate change, renders, decides and has the executor apply.
//! Errors keep the last good config and are logged.
//!
//! A change is applied as soon as it is seen; while an apply runs, the
//! snapshots that follow are one (the watch channel keeps the last), so a
//! burst costs as many applies as it lasts apply times, not one per event.
//! Only a reload waits: never less than `debounce` after the previous one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::apply::{ApplyError, RuntimeRefused};
use crate::model::Snapshot;
use crate::render::Renderer;

use super::{decide, Applied, ApplyOutputs, Command, Decision, Isolation, Outcome, Reconciled, Rendering};

/// How long changes must pause before the file written for runtime API
/// changes is checked: a rollout's add, drain and remove are one check, made
/// after the rollout rather than during it.
pub const MIRROR_CHECK_AFTER: Duration = Duration::from_secs(5);

/// The I/O of an apply; `crate::apply::Applier` talks to HAProxy.
// Driven on one task, so its futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Executor {
    /// Sends the commands in order; the first refusal is returned.
    async fn run_commands(&mut self, commands: &[Command]) -> Result<(), RuntimeRefused>;
    /// Writes `text` as the config file without reloading: it mirrors
    /// what the runtime API changed, so a later reload keeps it.
    fn write(&mut self, text: &str) -> Result<(), ApplyError>;
    /// `haproxy -c` on `text`: it must load before it is ever applied.
    async fn validate(&mut self, text: &str) -> Result<(), ApplyError>;
    /// Puts the validated `text` in place and reloads (or starts) HAProxy;
    /// on failure the file HAProxy runs stays on disk.
    async fn reload(&mut self, text: &str) -> Result<Outcome, ApplyError>;
    /// Resolves once HAProxy runs after a reload that found none running
    /// (its supervisor kept retrying the start): the last config is then
    /// applied anew, so `/status` and readiness see it. Never, by default.
    async fn haproxy_back(&mut self) {
        std::future::pending().await
    }
    /// The config HAProxy runs when this teal has applied none yet (an
    /// HAProxy adopted from an earlier teal, or run by another process):
    /// the file on disk. `None` when none runs.
    fn running_text(&self) -> Option<String> {
        None
    }
}

/// What the loop waits on.
pub struct Events {
    /// The routed snapshots of the model.
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// `--template` changed on disk.
    pub template_edits: mpsc::Receiver<()>,
    /// Something changed in `--certs`.
    pub cert_changes: mpsc::Receiver<()>,
    pub shutdown: CancellationToken,
}

pub struct Driver<E> {
    pub executor: E,
    pub debounce: Duration,
    /// `--template`; `None`: the embedded default, never edited.
    pub template: Option<PathBuf>,
    pub rendering: Rendering,
    pub outputs: ApplyOutputs,
    pub isolation: Isolation,
}

impl<E: Executor> Driver<E> {
    /// Runs until shutdown or until the snapshots end; gives the executor
    /// back so its HAProxy can be stopped.
    pub async fn run(mut self, mut events: Events) -> E {
        let mut state = Reconciled::default();
        let mut template_edited = false;
        let mut certs_changed = false;
        // Set while a reload waits for its window: the change it carries
        // was seen then, and is applied without waiting for another.
        let mut waiting_since: Option<Instant> = None;
        loop {
            if waiting_since.is_none() {
                let retry = self.isolation.next_retry(events.snapshots.borrow().as_deref());
                tokio::select! {
                    _ = events.shutdown.cancelled() => break,
                    changed = events.snapshots.changed() => if changed.is_err() { break },
                    // A refused service's input changed and its wait is over.
                    _ = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => {}
                    Some(()) = events.template_edits.recv() => template_edited = true,
                    Some(()) = events.cert_changes.recv() => certs_changed = true,
                    () = self.executor.haproxy_back() => {}
                    _ = tokio::time::sleep(MIRROR_CHECK_AFTER), if state.mirror_unchecked => {
                        self.check_mirror(&mut state).await;
                        continue;
                    }
                }
            }
            let changed_at = waiting_since.take().unwrap_or_else(Instant::now);
            // A file is read once the debounce has passed since its change,
            // so it is whole: a template caught between truncate and write
            // renders an empty config. Docker's changes do not wait.
            if template_edited || certs_changed {
                tokio::select! {
                    _ = events.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.debounce) => {}
                }
            }
            if std::mem::take(&mut template_edited) {
                self.reload_template();
            }
            if std::mem::take(&mut certs_changed) {
                self.rescan_certificates();
            }
            let Some(next) = events.snapshots.borrow_and_update().clone() else {
                continue;
            };
            let (snapshot, held) = self.isolation.hold_back(&state, &next);
            let render_started = Instant::now();
            let text = match self.rendering.render(&snapshot) {
                Ok(text) => text,
                Err(error) => {
                    tracing::error!(%error, "render failed; nothing was applied");
                    self.outputs.metrics.render_failures.inc();
                    self.outputs.record(Err(error.to_string()));
                    continue;
                }
            };
            let metrics = &self.outputs.metrics;
            metrics.render_duration.observe(render_started.elapsed().as_secs_f64());
            if let Some(opens) = self.reload_window(&mut state, &snapshot, &text) {
                // What changes meanwhile goes into the same reload.
                tokio::select! {
                    _ = events.shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(opens) => {}
                }
                waiting_since = Some(changed_at);
                continue;
            }
            let apply_started = Instant::now();
            let result = self.apply_isolated(&mut state, &next, snapshot, held, text).await;
            self.outputs.observe(&result, &next, apply_started, changed_at);
        }
        self.executor
    }

    /// When applying `text` is a reload less than the debounce after the
    /// previous one began: the instant its window opens. Reloads are what a
    /// burst must not multiply (each starts an HAProxy worker); server
    /// changes through the runtime API never wait, and neither does a
    /// change that only takes servers out of rotation.
    fn reload_window(
        &mut self,
        state: &mut Reconciled,
        snapshot: &Snapshot,
        text: &str,
    ) -> Option<tokio::time::Instant> {
        let opens = state.last_reload? + self.debounce;
        if tokio::time::Instant::now() >= opens || state.urgent(snapshot) {
            return None;
        }
        let rendering_changed = state.rendering_changed(&self.rendering);
        let reload = matches!(
            decide(state.applied(), snapshot, text, rendering_changed),
            Decision::Reload(_)
        );
        reload.then_some(opens)
    }

    /// Decides and applies `snapshot`, rendered as `text`. A refusal is
    /// `ApplyError::Rejected`.
    pub(super) async fn apply(
        &mut self,
        state: &mut Reconciled,
        snapshot: Arc<Snapshot>,
        text: String,
    ) -> Result<Outcome, ApplyError> {
        let rendering_changed = state.rendering_changed(&self.rendering);
        let text = match decide(state.applied(), &snapshot, &text, rendering_changed) {
            Decision::Unchanged => return Ok(Outcome::Unchanged),
            Decision::Reload(text) => text,
            // Server changes go to the running HAProxy first: routing a new
            // container or draining a stopping one should not wait for a file.
            Decision::Runtime(commands) => match self.executor.run_commands(&commands).await {
                Ok(()) => {
                    // Not checked now: HAProxy already took the change, and a
                    // check is a whole HAProxy start-up whose CPU, three times
                    // per rollout, doubled the requests slower than 2 ms while
                    // the rollout ran.
                    self.executor.write(&text)?;
                    state.set_applied(self.applied(snapshot, text), true);
                    return Ok(Outcome::Runtime(commands.len()));
                }
                Err(error) => {
                    tracing::warn!(%error, "runtime API refused a change; reloading instead");
                    text
                }
            },
        };
        let running = state.applied().map(|a| a.text.clone());
        let running = running.or_else(|| self.executor.running_text());
        self.check(running.as_deref(), &text).await?;
        state.mirror_unchecked = false;
        state.last_reload = Some(tokio::time::Instant::now());
        let outcome = self.executor.reload(&text).await?;
        state.set_applied(self.applied(snapshot, text), false);
        Ok(outcome)
    }

    fn applied(&self, snapshot: Arc<Snapshot>, text: String) -> Applied {
        Applied {
            snapshot,
            text,
            inputs: self.rendering.id(),
        }
    }

    /// Checks with `haproxy -c` the file written for runtime API changes.
    /// HAProxy runs those changes already, so a file that does not load
    /// stays: it is only reported. It can come from a custom template's
    /// server lines, and would fail the next reload's check just the same.
    async fn check_mirror(&mut self, state: &mut Reconciled) {
        state.mirror_unchecked = false;
        let Some(applied) = &state.applied else {
            return;
        };
        if let Err(error) = self.executor.validate(&applied.text).await {
            tracing::error!(%error, "the config written for runtime changes does not load; HAProxy keeps running them, but the next reload will be refused");
            self.outputs.metrics.validation_failures.inc();
            self.outputs.record(Err(error.to_string()));
        }
    }

    fn reload_template(&mut self) {
        match Renderer::load(self.template.as_deref()) {
            Ok(next) => {
                tracing::info!("template changed; re-rendering");
                self.rendering.set_template(next);
                self.isolation.rendering_edited();
            }
            Err(error) => {
                tracing::error!(%error, "template edit does not parse; the previous template keeps rendering");
                self.outputs.metrics.render_failures.inc();
                self.isolation.template_unparsable(error.to_string());
            }
        }
    }

    fn rescan_certificates(&mut self) {
        match self.rendering.context().rescan_certificates() {
            Ok(next) if next.tls != self.rendering.context().tls => {
                tracing::info!("certificates changed; re-rendering");
                self.rendering.set_context(next);
                self.isolation.rendering_edited();
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "certificates not re-read; the last good ones stay"),
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
