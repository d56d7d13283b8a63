//! `--reload supervise`: HAProxy in master-worker mode as teal's child.
//!
//! One task owns the child. It starts it, restarts it (with backoff) if it
//! dies, performs reloads one at a time, and on shutdown stops it and reaps
//! it, so HAProxy is never left orphaned.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{await_reload, ApplyError, Trigger};

pub struct SupervisorConfig {
    pub haproxy: PathBuf,
    pub config: PathBuf,
    pub master_socket: PathBuf,
}

type ReloadReply = oneshot::Sender<Result<(), ApplyError>>;

/// Talks to the supervising task.
pub struct Supervisor {
    reloads: mpsc::Sender<ReloadReply>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Starts HAProxy on the config already written, and waits until its
    /// master answers.
    pub async fn start(config: SupervisorConfig, shutdown: CancellationToken) -> Result<Self, ApplyError> {
        let child = spawn(&config)?;
        wait_for_master(&config, &child).await?;
        let (reloads, rx) = mpsc::channel(1);
        let task = tokio::spawn(supervise(config, child, rx, shutdown));
        Ok(Self { reloads, task })
    }

    /// Reloads HAProxy and waits until the new worker runs the new config.
    pub async fn reload(&self) -> Result<(), ApplyError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ApplyError::Reload("the HAProxy supervisor has stopped".into());
        self.reloads.send(reply).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Waits until the task has stopped and reaped HAProxy (after shutdown).
    pub async fn join(self) {
        drop(self.reloads);
        let _ = self.task.await;
    }
}

fn spawn(config: &SupervisorConfig) -> Result<Child, ApplyError> {
    let _ = std::fs::remove_file(&config.master_socket);
    let mut command = Command::new(&config.haproxy);
    command
        .arg("-W")
        .arg("-db")
        .arg("-f")
        .arg(&config.config)
        .arg("-S")
        .arg(&config.master_socket)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // If teal itself is killed outright, the kernel stops HAProxy too.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
    }
    let child = command
        .spawn()
        .map_err(|e| ApplyError::Reload(format!("cannot start {}: {e}", config.haproxy.display())))?;
    tracing::info!(pid = child.id(), config = %config.config.display(), "haproxy started");
    Ok(child)
}

async fn wait_for_master(config: &SupervisorConfig, child: &Child) -> Result<(), ApplyError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if super::socket::master_status(&config.master_socket).await.is_some() {
            return Ok(());
        }
        if child.id().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(ApplyError::Reload(format!(
        "haproxy did not come up (no answer on {}); see its messages above",
        config.master_socket.display()
    )))
}

async fn supervise(
    config: SupervisorConfig,
    mut child: Child,
    mut reloads: mpsc::Receiver<ReloadReply>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            status = child.wait() => {
                tracing::error!(status = ?status, retry_in = ?backoff, "haproxy exited; restarting it with the last good config");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match spawn(&config) {
                    Ok(next) => {
                        child = next;
                        if wait_for_master(&config, &child).await.is_ok() {
                            backoff = Duration::from_millis(250);
                        }
                    }
                    Err(error) => tracing::error!(%error, "haproxy restart failed"),
                }
            }
            reply = reloads.recv() => {
                let Some(reply) = reply else { break };
                let result = match child.id() {
                    Some(pid) => await_reload(&config.master_socket, Trigger::Signal(pid)).await,
                    None => Err(ApplyError::Reload("haproxy is not running".into())),
                };
                let _ = reply.send(result);
            }
        }
    }
    stop(&mut child).await;
}

/// SIGTERM, then SIGKILL if the master has not exited within a few seconds.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = signal(pid, Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_ok() {
            tracing::info!("haproxy stopped");
            return;
        }
        tracing::warn!("haproxy did not stop on SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

pub(super) fn signal(pid: u32, signal: Signal) -> Result<(), ApplyError> {
    let pid = i32::try_from(pid).map_err(|_| ApplyError::Reload(format!("bad pid {pid}")))?;
    kill(Pid::from_raw(pid), signal).map_err(|e| ApplyError::Reload(format!("cannot signal haproxy (pid {pid}): {e}")))
}
