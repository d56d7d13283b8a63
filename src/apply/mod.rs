//! Rendered text -> the running HAProxy.
//!
//! When only servers changed (added, removed, state, weight), the runtime
//! API applies them and the file is rewritten to agree; `haproxy -c` checks
//! that file once changes pause ([`Applier::check_mirror`]). Otherwise the
//! new config is validated with `haproxy -c` first, replaces the file
//! atomically and HAProxy is reloaded, one reload at a time, each awaited.
//! A config HAProxy rejects is never reloaded: the last good one keeps
//! serving, on disk too.

mod file;
mod runtime;
mod socket;
mod supervisor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::Snapshot;
use crate::settings::{ReloadMode, Settings};
use supervisor::{Supervisor, SupervisorConfig};

pub use file::write_atomic;
pub use socket::command as admin_command;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("haproxy rejected the new config, the last good one keeps serving:\n{0}")]
    Rejected(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("reload failed, the last good config keeps serving: {0}")]
    Reload(String),
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// Applied through the runtime API with this many commands; no reload.
    Runtime(usize),
    Reloaded,
    /// HAProxy was started on this config (supervise mode).
    Started,
    /// `--reload none`: the file was written, nothing signalled.
    Written,
}

struct Applied {
    text: String,
    snapshot: Snapshot,
}

pub struct Applier {
    haproxy: PathBuf,
    config: PathBuf,
    admin_socket: PathBuf,
    master_socket: PathBuf,
    server_state_file: PathBuf,
    reload: ReloadMode,
    docker: Option<bollard::Docker>,
    supervisor: Option<Supervisor>,
    shutdown: CancellationToken,
    applied: Option<Applied>,
    /// The file on disk holds runtime API changes `haproxy -c` has not
    /// checked yet.
    mirror_unchecked: bool,
}

impl Applier {
    /// `docker` is needed for `--reload container:NAME` only.
    pub fn new(settings: &Settings, docker: Option<bollard::Docker>, shutdown: CancellationToken) -> Self {
        Self {
            haproxy: settings.haproxy.clone(),
            config: settings.config.clone(),
            admin_socket: settings.admin_socket(),
            master_socket: settings.master_socket(),
            server_state_file: settings.server_state_file(),
            reload: settings.reload.clone(),
            docker,
            supervisor: None,
            shutdown,
            applied: None,
            mirror_unchecked: false,
        }
    }

    /// The snapshot and text HAProxy runs now, if any was applied.
    pub fn applied(&self) -> Option<(&Snapshot, &str)> {
        self.applied.as_ref().map(|a| (&a.snapshot, a.text.as_str()))
    }

    /// Applies `text`, rendered from `snapshot`. `only_servers_changed`: the
    /// caller checked that the template and settings are those of the last
    /// apply, so the runtime API may carry the difference.
    pub async fn apply(
        &mut self,
        snapshot: &Snapshot,
        text: String,
        only_servers_changed: bool,
    ) -> Result<Outcome, ApplyError> {
        if self.applied.as_ref().is_some_and(|a| a.text == text) {
            return Ok(Outcome::Unchanged);
        }
        // Server changes go to the running HAProxy first: routing a new
        // container or draining a stopping one should not wait for a file.
        let runtime_steps = match &self.applied {
            // Anything else that changed (template, certificates) needs a reload.
            Some(applied) if self.haproxy_running() && only_servers_changed => {
                runtime::plan(&applied.snapshot, snapshot)
            }
            _ => None,
        };
        if let Some(steps) = runtime_steps {
            match runtime::run(&self.admin_socket, &steps).await {
                Ok(()) => {
                    // The file must agree, so a later reload keeps these
                    // servers. Not checked now: HAProxy already took the
                    // change, and a check is a whole HAProxy start-up whose
                    // CPU, three times per rollout, doubled the requests
                    // slower than 2 ms while the rollout ran.
                    write_atomic(&self.config, text.as_bytes()).map_err(|source| write_error(&self.config, source))?;
                    self.mirror_unchecked = true;
                    self.applied = Some(Applied {
                        text,
                        snapshot: snapshot.clone(),
                    });
                    return Ok(Outcome::Runtime(steps.len()));
                }
                Err(error) => tracing::warn!(%error, "runtime API refused a change; reloading instead"),
            }
        }

        let previous = std::fs::read(&self.config).ok();
        self.install(&text).await?;
        self.mirror_unchecked = false;
        match self.reload().await {
            Ok(outcome) => {
                self.applied = Some(Applied {
                    text,
                    snapshot: snapshot.clone(),
                });
                Ok(outcome)
            }
            Err(error) => {
                // Keep the file HAProxy runs on disk, so a restart uses it.
                if let Some(previous) = previous {
                    let _ = write_atomic(&self.config, &previous);
                }
                Err(error)
            }
        }
    }

    /// Validates `text` with `haproxy -c` and only then puts it in place.
    async fn install(&self, text: &str) -> Result<(), ApplyError> {
        let staged = self.config.with_extension("cfg.next");
        write_atomic(&staged, text.as_bytes()).map_err(|source| write_error(&staged, source))?;
        if let Err(error) = validate(&self.haproxy, &staged).await {
            let _ = std::fs::remove_file(&staged);
            return Err(error);
        }
        std::fs::rename(&staged, &self.config).map_err(|source| write_error(&self.config, source))
    }

    /// Whether the file holds runtime API changes not checked yet.
    pub fn mirror_unchecked(&self) -> bool {
        self.mirror_unchecked
    }

    /// Checks with `haproxy -c` the file written for runtime API changes.
    /// HAProxy runs those changes already, so a file that does not load
    /// stays: it is only reported. It can come from a custom template's
    /// server lines, and would fail the next reload's check just the same.
    pub async fn check_mirror(&mut self) -> Result<(), ApplyError> {
        self.mirror_unchecked = false;
        validate(&self.haproxy, &self.config).await
    }

    fn haproxy_running(&self) -> bool {
        !matches!(self.reload, ReloadMode::Supervise) || self.supervisor.is_some()
    }

    async fn reload(&mut self) -> Result<Outcome, ApplyError> {
        self.save_server_state().await;
        match &self.reload {
            ReloadMode::Supervise => match &self.supervisor {
                Some(supervisor) => supervisor.reload().await.map(|()| Outcome::Reloaded),
                None => {
                    let config = SupervisorConfig {
                        haproxy: self.haproxy.clone(),
                        config: self.config.clone(),
                        master_socket: self.master_socket.clone(),
                    };
                    self.supervisor = Some(Supervisor::start(config, self.shutdown.clone()).await?);
                    Ok(Outcome::Started)
                }
            },
            ReloadMode::MasterSocket(path) => {
                let path = path.clone();
                await_reload(&path, Trigger::MasterCommand)
                    .await
                    .map(|()| Outcome::Reloaded)
            }
            ReloadMode::Pidfile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ApplyError::Reload(format!("cannot read pidfile {}: {e}", path.display())))?;
                let pid = text
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| ApplyError::Reload(format!("pidfile {} holds no pid", path.display())))?;
                supervisor::signal(pid, nix::sys::signal::Signal::SIGUSR2).map(|()| Outcome::Reloaded)
            }
            ReloadMode::Container(name) => {
                let docker = self
                    .docker
                    .as_ref()
                    .ok_or_else(|| ApplyError::Reload("no Docker connection to signal the container".into()))?;
                let options = bollard::query_parameters::KillContainerOptions {
                    signal: "SIGUSR2".into(),
                };
                docker
                    .kill_container(name, Some(options))
                    .await
                    .map_err(|e| ApplyError::Reload(format!("cannot signal container {name}: {e}")))?;
                Ok(Outcome::Reloaded)
            }
            ReloadMode::None => Ok(Outcome::Written),
        }
    }

    /// Writes `show servers state` where the config's `server-state-file`
    /// points, so the new worker starts each server as the old one had it.
    async fn save_server_state(&self) {
        let Ok(states) = socket::command(&self.admin_socket, "show servers state").await else {
            return; // Not running yet, or no admin socket: servers start as the config says.
        };
        if let Err(error) = write_atomic(&self.server_state_file, states.as_bytes()) {
            tracing::warn!(%error, path = %self.server_state_file.display(), "cannot save server states before reload");
        }
    }

    /// Stops a supervised HAProxy (after `shutdown` was cancelled).
    pub async fn stop(self) {
        if let Some(supervisor) = self.supervisor {
            supervisor.join().await;
        }
    }
}

fn write_error(path: &Path, source: std::io::Error) -> ApplyError {
    ApplyError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// `haproxy -c`: the config must load before it is ever applied.
pub async fn validate(haproxy: &Path, config: &Path) -> Result<(), ApplyError> {
    let mut command = tokio::process::Command::new(haproxy);
    command.arg("-c").arg("-f").arg(config);
    // A check costs HAProxy's whole start-up, 25-70 ms of CPU (OpenSSL's
    // initialisation mostly). At nice 10 it yields to the HAProxy serving
    // traffic. Best effort: an error is ignored.
    // SAFETY: setpriority is async-signal-safe and touches no parent memory.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
    let output = command
        .output()
        .await
        .map_err(|e| ApplyError::Rejected(format!("cannot run {} -c: {e}", haproxy.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        // HAProxy's [ALERT] lines say what is wrong; the rest is noise. A
        // config without a listener is refused on stdout alone.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let alerts: Vec<&str> = stderr.lines().filter(|l| l.contains("[ALERT]")).collect();
        let message = if alerts.is_empty() {
            format!("{} {}", stderr.trim(), String::from_utf8_lossy(&output.stdout).trim())
                .trim()
                .to_owned()
        } else {
            alerts.join("\n")
        };
        Err(ApplyError::Rejected(message))
    }
}

const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// How a reload is asked of an HAProxy master.
pub(crate) enum Trigger {
    /// SIGUSR2 to the master's pid.
    Signal(u32),
    /// `reload` on the master CLI (2.6 closes the connection without answer).
    MasterCommand,
}

/// Triggers a reload and waits until the master reports it done. Reload
/// signals sent close together merge, so each reload is awaited before the
/// next.
async fn await_reload(master_socket: &Path, trigger: Trigger) -> Result<(), ApplyError> {
    let before = socket::master_status(master_socket)
        .await
        .ok_or_else(|| ApplyError::Reload(format!("no answer on the master socket {}", master_socket.display())))?;
    match trigger {
        Trigger::Signal(pid) => supervisor::signal(pid, nix::sys::signal::Signal::SIGUSR2)?,
        Trigger::MasterCommand => {
            let _ = socket::command(master_socket, "reload").await;
        }
    }
    let deadline = tokio::time::Instant::now() + RELOAD_TIMEOUT;
    loop {
        // The master refuses connections for a moment while it re-executes.
        if let Some(now) = socket::master_status(master_socket).await {
            if now.reloads > before.reloads {
                return if now.failed > before.failed {
                    Err(ApplyError::Reload(
                        "haproxy could not load the new config (its messages are above)".into(),
                    ))
                } else {
                    Ok(())
                };
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApplyError::Reload(format!("no reload seen within {RELOAD_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
