//! The I/O of an apply, as `crate::reconcile` decided it: runtime API
//! commands, the config file written atomically, `haproxy -c`, and reloads,
//! one at a time, each awaited; and the supervised HAProxy master. A config
//! HAProxy rejects is never reloaded: what HAProxy runs (if anything) stays, on
//! disk too.

mod file;
mod master;
mod runtime;
mod socket;
mod supervisor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::reconcile::{Command, Executor, Outcome};
use crate::settings::{ReloadMode, Settings};

pub use file::{create_private_dir, write_atomic, write_atomic_unsynced, write_private};
pub use runtime::{run as run_commands, RuntimeRefused};
pub use socket::command as admin_command;
pub use supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    // No claim that a last good config serves: at a first start none does.
    #[error("haproxy rejected the new config, so it was not applied:\n{0}")]
    Rejected(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("reload failed, HAProxy was not given the new config: {0}")]
    Reload(String),
    /// No HAProxy runs (supervise mode): there is no last good config serving.
    #[error("haproxy is not running: {0}")]
    NotServing(String),
}

pub struct Applier {
    haproxy: PathBuf,
    config: PathBuf,
    admin_socket: PathBuf,
    server_state_file: PathBuf,
    reload: ReloadMode,
    docker: Option<crate::docker::Client>,
    supervisor: Option<Supervisor>,
    /// The last reload found no HAProxy running and the supervisor is
    /// retrying the start: once it runs, the config is to be applied anew.
    start_pending: bool,
}

impl Applier {
    /// `docker` is needed for `--reload container:NAME` only, `supervisor`
    /// for `--reload supervise`.
    pub fn new(settings: &Settings, docker: Option<crate::docker::Client>, supervisor: Option<Supervisor>) -> Self {
        Self {
            haproxy: settings.haproxy.clone(),
            config: settings.config.clone(),
            admin_socket: settings.admin_socket(),
            server_state_file: settings.server_state_file(),
            reload: settings.reload.clone(),
            docker,
            supervisor,
            start_pending: false,
        }
    }

    async fn signal_reload(&mut self) -> Result<Outcome, ApplyError> {
        self.save_server_state().await;
        match &self.reload {
            ReloadMode::Supervise => match &self.supervisor {
                Some(supervisor) => supervisor.reload().await,
                None => Err(ApplyError::NotServing("no supervisor".into())),
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
                docker
                    .kill(name, "SIGUSR2")
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

impl Executor for Applier {
    async fn run_commands(&mut self, commands: &[Command]) -> Result<(), RuntimeRefused> {
        runtime::run(&self.admin_socket, commands).await
    }

    /// Not synced: HAProxy runs these changes already, and a teal that
    /// starts again renders the file anew.
    fn write(&mut self, text: &str) -> Result<(), ApplyError> {
        write_atomic_unsynced(&self.config, text.as_bytes()).map_err(|source| write_error(&self.config, source))
    }

    /// Checks a staged copy next to the config, so relative paths resolve alike.
    async fn validate(&mut self, text: &str) -> Result<(), ApplyError> {
        let staged = self.config.with_extension("cfg.next");
        write_atomic_unsynced(&staged, text.as_bytes()).map_err(|source| write_error(&staged, source))?;
        let result = validate(&self.haproxy, &staged).await;
        let _ = std::fs::remove_file(&staged);
        result
    }

    async fn reload(&mut self, text: &str) -> Result<Outcome, ApplyError> {
        let previous = std::fs::read(&self.config).ok();
        // Synced: the file a restarted HAProxy container loads.
        write_atomic(&self.config, text.as_bytes()).map_err(|source| write_error(&self.config, source))?;
        let result = self.signal_reload().await;
        self.start_pending = matches!(result, Err(ApplyError::NotServing(_)));
        // Keep the file HAProxy runs on disk, so a restart uses it. With
        // none running, the supervisor retries the new one.
        if let (Err(_), Some(previous), false) = (&result, previous, self.start_pending) {
            let _ = write_atomic(&self.config, &previous);
        }
        result
    }

    fn running_text(&self) -> Option<String> {
        // Other modes cannot tell; their HAProxy runs what was last written.
        if self.supervisor.as_ref().is_some_and(|s| !s.running()) {
            return None;
        }
        std::fs::read_to_string(&self.config).ok()
    }

    async fn haproxy_back(&mut self) {
        match &self.supervisor {
            Some(supervisor) if self.start_pending => {
                supervisor.wait_running().await;
                self.start_pending = false;
            }
            _ => std::future::pending().await,
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
