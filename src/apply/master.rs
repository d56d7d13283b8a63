//! The HAProxy master of `--reload supervise`, as a process. It runs in a
//! session of its own, so a teal that is SIGKILLed, crashes or is OOM-killed
//! leaves it serving; it records its pid in the state dir, where the next
//! teal finds it again and adopts it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use super::socket;
use super::supervisor::signal;

/// How often the pid of an adopted master (not teal's child, so no wait())
/// is checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How long a new master gets to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a master gets to exit after SIGTERM, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What a master runs and where it can be found.
pub struct MasterPaths {
    pub haproxy: PathBuf,
    pub config: PathBuf,
    pub master_socket: PathBuf,
    /// Written by HAProxy itself (`-p`): the master's pid.
    pub pidfile: PathBuf,
}

/// A running HAProxy master: teal's child, or one an earlier teal started.
pub struct Master {
    pid: u32,
    /// Tells this process from a later one that is given the same pid.
    start_time: u64,
    /// `None` when adopted: another process is its parent, so teal watches
    /// its pid instead of waiting for it.
    child: Option<Child>,
}

impl Master {
    /// Starts `haproxy -W -db` on the config already written. The sockets
    /// are created 0600 by HAProxy itself, whatever teal's umask.
    pub fn spawn(paths: &MasterPaths) -> Result<Self, String> {
        // Only called while no master runs: a socket left here is stale.
        let _ = std::fs::remove_file(&paths.master_socket);
        let mut command = Command::new(&paths.haproxy);
        let mut master_socket = paths.master_socket.clone().into_os_string();
        master_socket.push(",mode,600");
        command
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(&paths.config)
            .arg("-S")
            .arg(master_socket)
            .arg("-p")
            .arg(&paths.pidfile)
            .stdin(Stdio::null());
        // A session of its own: the signals of teal's terminal or process
        // group (a Ctrl-C) do not reach it, and teal's death does not end it.
        // SAFETY: setsid is async-signal-safe and touches no parent memory.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", paths.haproxy.display()))?;
        let pid = child.id().ok_or("haproxy exited before teal saw its pid")?;
        tracing::info!(pid, config = %paths.config.display(), "haproxy started");
        Ok(Self {
            pid,
            start_time: start_time(pid).unwrap_or_default(),
            child: Some(child),
        })
    }

    /// The master an earlier teal left running: the pidfile names a live
    /// process, and the master socket answers as that process.
    pub async fn find(paths: &MasterPaths) -> Option<Self> {
        let pid = std::fs::read_to_string(&paths.pidfile).ok()?.trim().parse().ok()?;
        let start_time = start_time(pid)?;
        let status = socket::master_status(&paths.master_socket).await?;
        (status.pid == pid).then_some(Self {
            pid,
            start_time,
            child: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn adopted(&self) -> bool {
        self.child.is_none()
    }

    /// The config file it reads at each reload (`-f` on its command line).
    pub fn config(&self) -> Option<PathBuf> {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        args.find(|a| *a == b"-f")?;
        let path = args.next()?;
        Some(PathBuf::from(std::ffi::OsStr::new(std::str::from_utf8(path).ok()?)))
    }

    /// Waits until the master has answered `show proc` on its socket, or
    /// says how it failed. An exit at start-up (a port taken) is seen at once.
    pub async fn wait_serving(&mut self, master_socket: &Path) -> Result<(), String> {
        let pid = self.pid;
        tokio::select! {
            how = self.exited() => Err(format!("haproxy exited as it started ({how}); its messages are above")),
            () = answers(master_socket, pid) => Ok(()),
            () = tokio::time::sleep(START_TIMEOUT) => Err(format!(
                "haproxy did not answer on {} within {START_TIMEOUT:?}",
                master_socket.display()
            )),
        }
    }

    /// Waits until the master is gone and says how it ended.
    pub async fn exited(&mut self) -> String {
        if let Some(child) = &mut self.child {
            if let Ok(status) = child.wait().await {
                return describe(status);
            }
        }
        while start_time(self.pid) == Some(self.start_time) {
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
        "gone (it was not teal's child, so its exit status is unknown)".to_owned()
    }

    /// SIGTERM (the master stops its workers), then SIGKILL if it is still
    /// there after a grace period.
    pub async fn stop(mut self) {
        // Gone already (reaped, or no longer this process): the pid may be
        // someone else's now.
        let gone = match &self.child {
            Some(child) => child.id().is_none(),
            None => start_time(self.pid) != Some(self.start_time),
        };
        if gone {
            return;
        }
        let _ = signal(self.pid, Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, self.exited()).await.is_ok() {
            tracing::info!(pid = self.pid, "haproxy stopped");
            return;
        }
        tracing::warn!(pid = self.pid, grace = ?STOP_GRACE, "haproxy did not stop on SIGTERM; killing it");
        let _ = signal(self.pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(STOP_GRACE, self.exited()).await;
    }
}

async fn answers(master_socket: &Path, pid: u32) {
    while socket::master_status(master_socket).await.is_none_or(|s| s.pid != pid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(number)) => match Signal::try_from(number) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {number}"),
        },
        _ => status.to_string(),
    }
}

/// When the process started (in clock ticks since boot), or `None` once it
/// is gone or a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields follow it.
    let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    // starttime is field 22 of stat(5); the state was field 3.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_tells_a_live_process() {
        let own = std::process::id();
        assert!(start_time(own).is_some_and(|t| t > 0));
        assert_eq!(start_time(own), start_time(own));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn describes_exits() {
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "exit code 1");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by SIGKILL");
    }
}
