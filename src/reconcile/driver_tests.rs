//! The loop against a fake executor, on tokio's paused clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::*;
use crate::reconcile::plan;
use crate::reconcile::tests::{context_settings, rendering, snapshot};
use crate::render::DEFAULT_TEMPLATE;
use crate::status::Metrics;

const DEBOUNCE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Commands(Vec<String>),
    Write,
    Validate(String),
    Reload(String),
}

/// Records each call with the (paused) time it was made.
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<(Instant, Call)>>>,
    refuse_configs: Arc<AtomicBool>,
    /// Configs holding this text are refused, in HAProxy's words.
    refuse_containing: Arc<Mutex<Option<String>>>,
}

impl Fake {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push((Instant::now(), call));
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().iter().map(|(_, c)| c.clone()).collect()
    }

    /// Waits (on the paused clock) until `n` calls were made.
    async fn wait_for(&self, n: usize) -> Vec<Call> {
        for _ in 0..10_000 {
            if self.calls.lock().unwrap().len() >= n {
                return self.calls();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only these calls were made: {:?}", self.calls());
    }

    fn time_of(&self, index: usize) -> Instant {
        self.calls.lock().unwrap()[index].0
    }
}

impl Executor for Fake {
    async fn run_commands(&mut self, commands: &[Command]) -> Result<(), RuntimeRefused> {
        self.record(Call::Commands(commands.iter().map(Command::to_string).collect()));
        Ok(())
    }

    fn write(&mut self, _text: &str) -> Result<(), ApplyError> {
        self.record(Call::Write);
        Ok(())
    }

    async fn validate(&mut self, text: &str) -> Result<(), ApplyError> {
        self.record(Call::Validate(text.to_owned()));
        if self.refuse_configs.load(Ordering::SeqCst) {
            return Err(ApplyError::Rejected("[ALERT] refused by the test".into()));
        }
        if let Some(bad) = self.refuse_containing.lock().unwrap().as_deref() {
            if text.contains(bad) {
                return Err(ApplyError::Rejected(format!(
                    "[ALERT]    (7) : config : parsing [haproxy.cfg:40] : {bad} is refused by the test"
                )));
            }
        }
        Ok(())
    }

    async fn reload(&mut self, text: &str) -> Result<Outcome, ApplyError> {
        self.record(Call::Reload(text.to_owned()));
        Ok(Outcome::Reloaded)
    }
}

struct Harness {
    fake: Fake,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    template_edits: mpsc::Sender<()>,
    metrics: Arc<Metrics>,
    last_apply: watch::Receiver<Option<crate::status::ApplyRecord>>,
    refused: watch::Receiver<crate::isolate::Refusals>,
    _shutdown: tokio_util::sync::DropGuard,
}

fn start(template: Option<PathBuf>) -> Harness {
    let fake = Fake::default();
    let (snapshots, snapshots_rx) = watch::channel(None);
    let (template_edits, template_edits_rx) = mpsc::channel(1);
    let (_certs_tx, cert_changes) = mpsc::channel(1);
    let (last_apply_tx, last_apply) = watch::channel(None);
    let (refused_tx, refused) = watch::channel(Default::default());
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let rendering = match &template {
        Some(path) => Rendering::new(Renderer::load(Some(path)).unwrap(), context_settings()),
        None => rendering(DEFAULT_TEMPLATE),
    };
    let driver = Driver {
        executor: fake.clone(),
        debounce: DEBOUNCE,
        template,
        rendering,
        outputs: ApplyOutputs {
            last_apply: last_apply_tx,
            metrics: metrics.clone(),
        },
        isolation: Isolation::new(false, refused_tx),
    };
    let events = Events {
        snapshots: snapshots_rx,
        template_edits: template_edits_rx,
        cert_changes,
        shutdown: shutdown.clone(),
    };
    tokio::spawn(driver.run(events));
    Harness {
        fake,
        snapshots,
        template_edits,
        metrics,
        last_apply,
        refused,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Harness {
    fn send(&self, snapshot: &Snapshot) {
        self.snapshots.send_replace(Some(Arc::new(snapshot.clone())));
    }

    /// Sends the first snapshot and waits for its validate and reload.
    async fn started(&self, first: &Snapshot) {
        self.send(first);
        self.fake.wait_for(2).await;
    }
}

fn lines(commands: Vec<Command>) -> Vec<String> {
    commands.iter().map(Command::to_string).collect()
}

#[tokio::test(start_paused = true)]
async fn a_server_change_applies_at_once() {
    let h = start(None);
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    // Within the debounce of the start's reload: server changes do not wait.
    let sent = Instant::now();
    let two = snapshot(&[("a", "web"), ("bb", "web")]);
    h.send(&two);
    h.fake.wait_for(4).await;
    assert_eq!(
        h.fake.calls()[2..],
        [Call::Commands(lines(plan(&one, &two).unwrap())), Call::Write]
    );
    assert_eq!(h.fake.time_of(2), sent);
}

#[tokio::test(start_paused = true)]
async fn reloads_of_a_burst_are_one_after_the_window() {
    let h = start(None);
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    let first_reload = h.fake.time_of(1);
    // Two new services, a quarter of the debounce apart: one reload, when
    // the debounce since the last one is over.
    h.send(&snapshot(&[("a", "web"), ("bb", "api")]));
    tokio::time::sleep(DEBOUNCE / 4).await;
    let both = snapshot(&[("a", "web"), ("bb", "api"), ("ccc", "db")]);
    h.send(&both);
    let calls = h.fake.wait_for(4).await;
    let text = rendering(DEFAULT_TEMPLATE).render(&both).unwrap();
    assert_eq!(calls[2..], [Call::Validate(text.clone()), Call::Reload(text)]);
    assert!(h.fake.time_of(2) - first_reload >= DEBOUNCE);
    tokio::time::sleep(DEBOUNCE * 3).await;
    assert_eq!(h.fake.calls().len(), 4, "one reload for the burst");
    // After a quiet period a reload goes at once.
    let sent = Instant::now();
    h.send(&snapshot(&[("a", "web"), ("bb", "api")]));
    h.fake.wait_for(6).await;
    assert_eq!(h.fake.time_of(4), sent);
}

#[tokio::test(start_paused = true)]
async fn taking_a_server_out_does_not_wait() {
    let h = start(None);
    let two = snapshot(&[("a", "web"), ("bb", "web")]);
    h.started(&two).await;
    let sent = Instant::now();
    let one = snapshot(&[("a", "web")]);
    h.send(&one);
    h.fake.wait_for(4).await;
    assert_eq!(h.fake.calls()[2], Call::Commands(lines(plan(&two, &one).unwrap())));
    assert!(h.fake.time_of(2) - sent < DEBOUNCE);
}

#[tokio::test(start_paused = true)]
async fn a_template_edit_is_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg.hbs");
    std::fs::write(&path, DEFAULT_TEMPLATE).unwrap();
    let h = start(Some(path.clone()));
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    let edited = format!("# edited\n{DEFAULT_TEMPLATE}");
    std::fs::write(&path, &edited).unwrap();
    h.template_edits.send(()).await.unwrap();
    let calls = h.fake.wait_for(4).await;
    let text = rendering(&edited).render(&one).unwrap();
    assert_eq!(calls[2..], [Call::Validate(text.clone()), Call::Reload(text)]);
}

#[tokio::test(start_paused = true)]
async fn a_config_refused_whatever_the_services_keeps_the_last_applied_state() {
    let h = start(None);
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    h.fake.refuse_configs.store(true, Ordering::SeqCst);
    // A new service needs a reload, which is refused. The services HAProxy
    // runs are not checked again: the new one is refused.
    h.send(&snapshot(&[("a", "web"), ("bb", "api")]));
    h.fake.wait_for(3).await;
    tokio::time::sleep(DEBOUNCE).await;
    assert_eq!(h.metrics.validation_failures.get(), 1);
    assert_eq!(h.refused.borrow().services[0].service, "api");
    // The next change is planned from what HAProxy runs: `one`.
    h.fake.refuse_configs.store(false, Ordering::SeqCst);
    let two = snapshot(&[("a", "web"), ("bb", "web")]);
    h.send(&two);
    let calls = h.fake.wait_for(4).await;
    assert_eq!(calls[3], Call::Commands(lines(plan(&one, &two).unwrap())));
    assert!(h.refused.borrow().services.is_empty(), "api is gone");
}

#[tokio::test(start_paused = true)]
async fn a_refused_service_is_left_out_and_server_changes_still_flow() {
    let h = start(None);
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    *h.fake.refuse_containing.lock().unwrap() = Some("backend api".into());
    h.send(&snapshot(&[("a", "web"), ("bb", "api")]));
    h.fake.wait_for(3).await;
    tokio::time::sleep(DEBOUNCE * 2).await;
    let refused = h.refused.borrow().clone();
    assert_eq!(refused.services.len(), 1);
    assert_eq!(
        refused.services[0].reason,
        "parsing [haproxy.cfg:40] : backend api is refused by the test"
    );
    assert_eq!(refused.excluded[0].container_name, "app-bb");
    assert_eq!(h.metrics.services_refused.get(), 1);
    // web scales: the runtime API adds the server, api stays out unchecked.
    let two = snapshot(&[("a", "web"), ("bb", "api"), ("ccc", "web")]);
    h.send(&two);
    let calls = h.fake.wait_for(5).await;
    let mut web_only = two.clone();
    web_only.services.retain(|s| s.name.as_str() == "web");
    assert_eq!(
        calls[3..5],
        [Call::Commands(lines(plan(&one, &web_only).unwrap())), Call::Write]
    );
    // api changes: tried again once its wait is over, refused again.
    let three = snapshot(&[("a", "web"), ("bb", "api"), ("ccc", "web"), ("dddd", "api")]);
    h.send(&three);
    let calls = h.fake.wait_for(6).await;
    assert!(
        matches!(&calls[5], Call::Validate(text) if text.contains("backend api")),
        "{calls:?}"
    );
    assert_eq!(h.refused.borrow().excluded.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_service_that_changes_at_once_is_tried_again_after_its_wait() {
    let h = start(None);
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    *h.fake.refuse_containing.lock().unwrap() = Some("backend api".into());
    h.send(&snapshot(&[("a", "web"), ("bb", "api")]));
    h.fake.wait_for(3).await;
    // Changed after its 1 s wait (the debounce is as long): tried, refused
    // again; the next wait is 2 s.
    h.send(&snapshot(&[("a", "web"), ("bb", "api"), ("ccc", "api")]));
    h.fake.wait_for(4).await;
    let refused_again = h.fake.time_of(3);
    // Changed at once: held, not checked, until the wait ends; then tried
    // with no further event.
    h.send(&snapshot(&[
        ("a", "web"),
        ("bb", "api"),
        ("ccc", "api"),
        ("dddd", "api"),
    ]));
    let calls = h.fake.wait_for(5).await;
    assert!(
        matches!(&calls[4], Call::Validate(text) if text.contains("dddd")),
        "{calls:?}"
    );
    assert!(
        h.fake.time_of(4) - refused_again >= Duration::from_secs(2),
        "tried before its wait was over"
    );
    tokio::time::sleep(DEBOUNCE * 10).await;
    assert_eq!(
        h.fake.calls().len(),
        5,
        "its input did not change again: not tried again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_template_edit_keeps_the_last_good_one_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg.hbs");
    std::fs::write(&path, DEFAULT_TEMPLATE).unwrap();
    let h = start(Some(path.clone()));
    let one = snapshot(&[("a", "web")]);
    h.started(&one).await;
    *h.fake.refuse_containing.lock().unwrap() = Some("bad-keyword".into());
    std::fs::write(&path, format!("{DEFAULT_TEMPLATE}\n    bad-keyword\n")).unwrap();
    h.template_edits.send(()).await.unwrap();
    h.fake.wait_for(3).await;
    tokio::time::sleep(DEBOUNCE * 2).await;
    assert!(h
        .refused
        .borrow()
        .rendering
        .as_deref()
        .is_some_and(|r| r.contains("bad-keyword")));
    // A server change goes through the runtime API, rendered as before.
    let two = snapshot(&[("a", "web"), ("bb", "web")]);
    h.send(&two);
    let calls = h.fake.wait_for(5).await;
    assert_eq!(
        calls[3..5],
        [Call::Commands(lines(plan(&one, &two).unwrap())), Call::Write]
    );
    // A new edit is tried again.
    let edited = format!("# fixed\n{DEFAULT_TEMPLATE}");
    std::fs::write(&path, &edited).unwrap();
    h.template_edits.send(()).await.unwrap();
    let calls = h.fake.wait_for(7).await;
    let text = rendering(&edited).render(&two).unwrap();
    assert_eq!(calls[5..7], [Call::Validate(text.clone()), Call::Reload(text)]);
    tokio::time::sleep(DEBOUNCE).await;
    assert_eq!(h.refused.borrow().rendering, None);
    assert!(h.last_apply.borrow().as_ref().is_some_and(|r| r.ok));
}

#[tokio::test(start_paused = true)]
async fn the_mirror_is_checked_once_changes_pause() {
    let h = start(None);
    h.started(&snapshot(&[("a", "web")])).await;
    let two = snapshot(&[("a", "web"), ("bb", "web")]);
    h.send(&two);
    let calls = h.fake.wait_for(5).await;
    assert_eq!(calls[3], Call::Write);
    let text = rendering(DEFAULT_TEMPLATE).render(&two).unwrap();
    assert_eq!(calls[4], Call::Validate(text));
    assert!(h.fake.time_of(4) - h.fake.time_of(3) >= MIRROR_CHECK_AFTER);
    tokio::time::sleep(MIRROR_CHECK_AFTER * 3).await;
    assert_eq!(h.fake.calls().len(), 5, "checked once");
}
