//! `--reload supervise`: one task owns the HAProxy master.
//!
//! At start it adopts the master an earlier teal left running in the state
//! dir (a teal that was killed or crashed: the data plane outlives it), else
//! it starts one on the first config. It starts it again with backoff when
//! it ends, a failed first start included, without waiting for a Docker
//! event; it performs reloads one at a time; on shutdown it stops it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::master::{Master, MasterPaths};
use super::{await_reload, ApplyError, Outcome, Trigger};
use crate::backoff::Backoff;
use crate::settings::Settings;
use crate::status::{HaproxyExit, HaproxyProcess, Metrics};

/// A master that ran this long before it ended was not crash-looping: the
/// next start waits the shortest delay again.
const STABLE_RUN: Duration = Duration::from_secs(30);

type ReloadReply = oneshot::Sender<Result<Outcome, ApplyError>>;

/// Talks to the supervising task.
pub struct Supervisor {
    reloads: mpsc::Sender<ReloadReply>,
    status: watch::Receiver<HaproxyProcess>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Adopts the master an earlier teal left in `--state-dir` if one runs
    /// there on the same `--config`; else none runs until the first reload.
    pub async fn start(settings: &Settings, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let paths = MasterPaths {
            haproxy: settings.haproxy.clone(),
            config: absolute(&settings.config),
            master_socket: absolute(&settings.master_socket()),
            pidfile: absolute(&settings.state_dir.join("haproxy.pid")),
        };
        let master = match Master::find(&paths).await {
            Some(found) if found.config().as_deref() == Some(paths.config.as_path()) => {
                tracing::info!(
                    pid = found.pid(),
                    "haproxy left running by an earlier teal; adopting it"
                );
                Some(found)
            }
            Some(other) => {
                // Its reloads would read another file than the one teal writes.
                tracing::warn!(
                    pid = other.pid(), runs = ?other.config(), config = %paths.config.display(),
                    "haproxy in --state-dir runs another config file; stopping it to start one on --config"
                );
                other.stop().await;
                None
            }
            None => None,
        };
        let (status_tx, status) = watch::channel(HaproxyProcess::default());
        let mut supervision = Supervision {
            paths,
            metrics,
            status: status_tx,
            started_at: Instant::now(),
            master,
            retry_at: None,
            after_exit: false,
            backoff: Backoff::new(),
        };
        supervision.publish();
        let (reloads, rx) = mpsc::channel(1);
        let task = tokio::spawn(supervision.run(rx, shutdown));
        Self { reloads, status, task }
    }

    /// The master as `/status` shows it.
    pub fn status(&self) -> watch::Receiver<HaproxyProcess> {
        self.status.clone()
    }

    pub fn running(&self) -> bool {
        self.status.borrow().running
    }

    /// Resolves once a master runs (at once if one does).
    pub async fn wait_running(&self) {
        let _ = self.status.clone().wait_for(|s| s.running).await;
    }

    /// Reloads HAProxy on the config now in place and waits until the new
    /// worker runs it; starts HAProxy when none runs.
    pub async fn reload(&self) -> Result<Outcome, ApplyError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ApplyError::NotServing("the HAProxy supervisor has stopped".into());
        self.reloads.send(reply).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Waits until the task has stopped HAProxy (after shutdown).
    pub async fn join(self) {
        drop(self.reloads);
        let _ = self.task.await;
    }
}

/// The supervising task's state.
struct Supervision {
    paths: MasterPaths,
    metrics: Arc<Metrics>,
    status: watch::Sender<HaproxyProcess>,
    master: Option<Master>,
    /// When the running master was started or adopted.
    started_at: Instant,
    /// When the next start is due, while none runs after one did.
    retry_at: Option<Instant>,
    /// The last master ended or failed to start: the next start is a restart.
    after_exit: bool,
    backoff: Backoff,
}

impl Supervision {
    async fn run(mut self, mut reloads: mpsc::Receiver<ReloadReply>, shutdown: CancellationToken) {
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                how = exited(&mut self.master) => self.ended(how),
                () = sleep_until(retry_at) => {
                    let _ = self.start(&shutdown).await;
                }
                reply = reloads.recv() => {
                    let Some(reply) = reply else { break };
                    let result = self.reload(&shutdown).await;
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(master) = self.master.take() {
            master.stop().await;
            // A clean stop leaves nothing for the next teal to adopt.
            let _ = std::fs::remove_file(&self.paths.pidfile);
        }
        self.publish();
    }

    async fn reload(&mut self, shutdown: &CancellationToken) -> Result<Outcome, ApplyError> {
        match &self.master {
            Some(master) => await_reload(&self.paths.master_socket, Trigger::Signal(master.pid()))
                .await
                .map(|()| Outcome::Reloaded),
            // A new config may be what lets it start: try now, not at the retry.
            None => self
                .start(shutdown)
                .await
                .map(|()| Outcome::Started)
                .map_err(ApplyError::NotServing),
        }
    }

    /// Starts a master on the config in place and waits until it answers.
    async fn start(&mut self, shutdown: &CancellationToken) -> Result<(), String> {
        self.retry_at = None;
        let result = match Master::spawn(&self.paths) {
            Ok(mut master) => {
                let serving = tokio::select! {
                    result = master.wait_serving(&self.paths.master_socket) => result,
                    _ = shutdown.cancelled() => Err("teal is shutting down".to_owned()),
                };
                match serving {
                    Ok(()) => Ok(master),
                    Err(error) => {
                        master.stop().await;
                        Err(error)
                    }
                }
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(master) => {
                if std::mem::take(&mut self.after_exit) {
                    self.metrics.haproxy_restarts.inc();
                    self.status.send_modify(|s| s.restarts += 1);
                    tracing::info!(pid = master.pid(), "haproxy serving again");
                }
                self.master = Some(master);
                self.started_at = Instant::now();
                self.publish();
                Ok(())
            }
            Err(error) => {
                let delay = self.schedule_retry();
                self.record_exit(&error);
                tracing::error!(%error, retry_in = ?delay, "haproxy did not start; nothing serves until it does");
                Err(format!("{error}; teal tries again in {delay:?}"))
            }
        }
    }

    /// The master ended without teal asking.
    fn ended(&mut self, how: String) {
        let pid = self.master.take().map(|m| m.pid());
        if self.started_at.elapsed() >= STABLE_RUN {
            self.backoff.reset();
        }
        let delay = self.schedule_retry();
        self.record_exit(&how);
        tracing::error!(
            ?pid, %how, retry_in = ?delay,
            "haproxy exited; nothing serves until teal starts it again on the config in --config"
        );
    }

    fn schedule_retry(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        self.after_exit = true;
        delay
    }

    fn record_exit(&mut self, reason: &str) {
        self.metrics.haproxy_exits.inc();
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        self.status.send_modify(|s| {
            s.exits += 1;
            s.last_exit = Some(HaproxyExit {
                time,
                reason: reason.to_owned(),
            });
        });
        self.publish();
    }

    fn publish(&mut self) {
        let master = self.master.as_ref();
        self.metrics.haproxy_running.set(i64::from(master.is_some()));
        self.status.send_modify(|s| {
            s.pid = master.map(Master::pid);
            s.adopted = master.is_some_and(Master::adopted);
            s.running = master.is_some();
        });
    }
}

async fn exited(master: &mut Option<Master>) -> String {
    match master {
        Some(master) => master.exited().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(super) fn signal(pid: u32, signal: Signal) -> Result<(), ApplyError> {
    let pid = i32::try_from(pid).map_err(|_| ApplyError::Reload(format!("bad pid {pid}")))?;
    kill(Pid::from_raw(pid), signal).map_err(|e| ApplyError::Reload(format!("cannot signal haproxy (pid {pid}): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `false` stands in for an HAProxy that exits as it starts (a port taken).
    #[tokio::test]
    async fn a_start_that_exits_at_once_is_reported_at_once_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            haproxy: "false".into(),
            state_dir: dir.path().into(),
            config: dir.path().join("haproxy.cfg"),
            ..Default::default()
        };
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::start(&settings, metrics.clone(), shutdown.clone()).await;
        let asked = std::time::Instant::now();
        let error = supervisor.reload().await.unwrap_err().to_string();
        assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
        assert!(
            error.contains("exit code 1") && error.contains("tries again"),
            "{error}"
        );
        assert!(!error.contains("keeps serving"), "{error}");
        // Then the supervisor retries by itself, with backoff.
        let mut status = supervisor.status();
        // is_ok() at once: the guard wait_for returns would block the sender.
        let retried = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.exits >= 3))
            .await
            .is_ok();
        assert!(retried, "three failed starts within 10 s");
        let now = supervisor.status().borrow().clone();
        assert!(!now.running && now.restarts == 0, "{now:?}");
        assert_eq!(metrics.haproxy_exits.get(), now.exits);
        shutdown.cancel();
        supervisor.join().await;
    }
}
