//! What a scenario runs: a `teal run` (or, for the naive baseline, a plain
//! HAProxy) and the containers it creates, all removed on drop.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The test image, which [`crate::app::IMAGE`] builds on.
pub const IMAGE: &str = "teal-test-app:latest";

/// A free 127.0.0.1 port, never one handed out before in this run (the
/// kernel may give a just-released port again).
pub fn free_addr() -> SocketAddr {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.port()) {
            return addr;
        }
    }
}

/// Runs a command, returns its trimmed stdout; panics with stderr on failure.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("  (gave up waiting: {what})");
    false
}

/// Containers created through it are removed when it drops.
pub struct Containers {
    pub prefix: String,
    /// Put on every routed container beside `{prefix}.service` (a peer's labels).
    labels: Vec<String>,
    ids: Vec<String>,
}

impl Containers {
    pub fn new(prefix: &str) -> Self {
        Self::with_labels(prefix, Vec::new())
    }

    /// Routed containers also get `labels`.
    pub fn with_labels(prefix: &str, labels: Vec<String>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            labels,
            ids: Vec::new(),
        }
    }

    /// `docker run -d` of the test app in service `service` (`options`
    /// before the image, `command` after it); returns the container's
    /// hostname (its 12-digit id), which is also its HTTP body.
    pub fn run(&mut self, service: &str, options: &[&str], command: &[&str]) -> String {
        let id = self.docker_create_or_run("run", Some(service), options, command);
        id[..12].to_owned()
    }

    /// `docker run -d` of the app with no label: a container teal ignores.
    pub fn run_unrouted(&mut self, options: &[&str]) -> String {
        let id = self.docker_create_or_run("run", None, options, &[]);
        id[..12].to_owned()
    }

    fn docker_create_or_run(
        &mut self,
        verb: &str,
        service: Option<&str>,
        options: &[&str],
        command: &[&str],
    ) -> String {
        let label = service.map(|service| format!("{}.service={service}", self.prefix));
        let mut args = vec![verb];
        if let Some(label) = &label {
            args.extend(["--label", label.as_str()]);
            for label in &self.labels {
                args.extend(["--label", label.as_str()]);
            }
        }
        if verb == "run" {
            args.push("-d");
        }
        args.extend_from_slice(options);
        args.push(crate::app::IMAGE);
        args.extend_from_slice(command);
        let id = sh("docker", &args);
        self.ids.push(id.clone());
        id
    }

    /// `docker create`: [`Containers::run`] without the start; returns the full id.
    pub fn create(&mut self, service: &str, options: &[&str], command: &[&str]) -> String {
        self.docker_create_or_run("create", Some(service), options, command)
    }

    pub fn start(&self, id: &str) {
        sh("docker", &["start", id]);
    }

    /// Creates `n` containers without starting them.
    pub fn create_many(&mut self, service: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| self.docker_create_or_run("create", Some(service), &[], &[]))
            .collect()
    }

    /// Starts them all with one `docker start`.
    pub fn start_all(&self, ids: &[String]) {
        let mut args = vec!["start"];
        args.extend(ids.iter().map(String::as_str));
        sh("docker", &args);
    }

    pub fn stop(&self, id: &str, grace_seconds: u32) {
        sh("docker", &["stop", "-t", &grace_seconds.to_string(), id]);
    }

    pub fn remove(&mut self, id: &str) {
        sh("docker", &["rm", "-f", id]);
        self.ids.retain(|known| !known.starts_with(id));
    }
}

impl Drop for Containers {
    /// One at a time: `docker rm -f` with many ids removes them in parallel,
    /// and Docker 20.10's network cleanup deadlocked under 200 of those.
    /// With the ones `teal rollout` created: every container of the prefix.
    fn drop(&mut self) {
        let label = format!("label={}.service", self.prefix);
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &label]).output() {
            self.ids
                .extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned));
        }
        for id in &self.ids {
            let _ = Command::new("docker")
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A `teal run` with its own prefix, ports and state dir.
pub struct Teal {
    child: Child,
    pub http: SocketAddr,
    pub status: SocketAddr,
    prefix: String,
    dir: PathBuf,
    /// Flags beyond the ones every bench teal gets.
    args: Vec<String>,
}

impl Teal {
    pub async fn start(prefix: &str) -> Teal {
        Self::start_with(prefix, &[]).await
    }

    /// With more `teal run` flags, e.g. `--certs DIR`.
    pub async fn start_with(prefix: &str, args: &[String]) -> Teal {
        let dir = std::env::temp_dir().join(format!("{prefix}-bench"));
        std::fs::create_dir_all(&dir).expect("bench dir");
        let (http, status) = (free_addr(), free_addr());
        let mut teal = Teal {
            child: spawn_teal(prefix, &dir, http, status, args),
            http,
            status,
            prefix: prefix.to_owned(),
            dir,
            args: args.to_vec(),
        };
        teal.wait_started().await;
        teal
    }

    async fn wait_started(&mut self) {
        let status = self.status;
        let up = wait_until(Duration::from_secs(20), "teal's status endpoint", async || {
            std::net::TcpStream::connect(status).is_ok()
        })
        .await;
        assert!(up, "teal did not start; see {}", self.dir.join("teal.log").display());
    }

    /// Runs `teal ARGS` (`rollout`, `drain`...) against this daemon: its
    /// prefix, state dir and status endpoint. Whether it succeeded, and
    /// what it printed.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = self.cli_command(args).output().expect("spawn teal");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), printed)
    }

    /// The command line of [`Teal::cli`], for a caller that reads its output as it comes.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_teal"));
        command
            .args(args)
            .env("TEAL_LABEL_PREFIX", &self.prefix)
            .env("TEAL_STATE_DIR", &self.dir)
            .env("TEAL_STATUS_BIND", self.status.to_string())
            .stdin(Stdio::null());
        command
    }

    /// The label prefix, unique to the scenario.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// SIGKILL, as a crash or the OOM killer would: teal gets no say.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After `kill`: a new teal on the same state dir, ports and prefix.
    pub async fn restart(&mut self) {
        self.child = spawn_teal(&self.prefix, &self.dir, self.http, self.status, &self.args);
        self.wait_started().await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state dir; every HAProxy this teal runs names it on its command line.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `teal_reloads_total{result="ok"}` from /metrics (starts included).
    pub async fn reloads(&self) -> u64 {
        metric(self.status, "teal_reloads_total{result=\"ok\"}").await
    }

    /// Servers HAProxy reports UP, from /status.
    pub async fn servers_up(&self) -> usize {
        let Ok(report) = teal::status::fetch(self.status, &self.dir).await else {
            return 0;
        };
        report
            .services
            .iter()
            .flat_map(|s| &s.servers)
            .filter(|s| s.haproxy == Some(teal::status::HaproxyState::Up))
            .count()
    }
}

fn spawn_teal(prefix: &str, dir: &Path, http: SocketAddr, status: SocketAddr, args: &[String]) -> Child {
    // Appended to: a restarted teal's log follows the killed one's.
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("teal.log"))
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_teal"))
        .args(["run", "--label-prefix", prefix, "--reload", "supervise"])
        .arg("--state-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("haproxy.cfg"))
        .args(["--http-bind", &http.to_string(), "--status-bind", &status.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn teal")
}

impl Drop for Teal {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        // An HAProxy that outlived a killed teal names the dir too.
        for (pid, _) in processes_mentioning(&self.dir.to_string_lossy()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every process: its pid and its /proc directory.
fn processes() -> impl Iterator<Item = (i32, PathBuf)> {
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries.filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path())))
}

/// Live processes (pid, parent pid) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, i32)> {
    let own = std::process::id() as i32;
    processes()
        .filter_map(|(pid, dir)| {
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // After the command name (which may hold spaces): state, then ppid.
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?;
            let ppid = rest.next()?.parse().ok()?;
            let mentions = String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle);
            (pid != own && state != "Z" && mentions).then_some((pid, ppid))
        })
        .collect()
}

/// Live processes whose command name (`/proc/PID/comm`) starts with one of `names`.
pub fn processes_named(names: &[&str]) -> Vec<u32> {
    processes()
        .filter_map(|(pid, dir)| {
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            names.iter().any(|name| comm.starts_with(name)).then_some(pid as u32)
        })
        .collect()
}

async fn metric(status: SocketAddr, name: &str) -> u64 {
    let body = http_get(status, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let _ = stream.read_to_string(&mut answer).await;
    }
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Peak and current resident memory of a process, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    let clock = 100;
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock)
}

/// A plain HAProxy on a static config: the naive baseline.
pub struct StaticHaproxy {
    child: Child,
    dir: PathBuf,
}

impl StaticHaproxy {
    pub fn start(dir: &Path, bind: SocketAddr, server: SocketAddr) -> StaticHaproxy {
        let config = format!(
            "global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
             timeout server 30s\nfrontend web\n    bind {bind}\n    default_backend app\nbackend app\n    \
             server app {server} check\n"
        );
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("config");
        let child = Command::new("haproxy")
            .args(["-W", "-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        StaticHaproxy {
            child,
            dir: dir.to_owned(),
        }
    }
}

impl Drop for StaticHaproxy {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A compose project of one file, through v2 (`docker compose`) or v1
/// (`docker-compose`); `down` on drop.
pub struct ComposeProject {
    command: &'static [&'static str],
    file: PathBuf,
    project: String,
}

impl ComposeProject {
    /// `command`: `["docker", "compose"]` or `["docker-compose"]`.
    pub fn new(command: &'static [&'static str], file: &Path, project: &str) -> ComposeProject {
        ComposeProject {
            command,
            file: file.to_owned(),
            project: project.to_owned(),
        }
    }

    /// Whether this compose runs here.
    pub fn installed(command: &[&str]) -> bool {
        Command::new(command[0])
            .args(&command[1..])
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success())
    }

    pub fn run(&self, args: &[&str]) -> String {
        let file = self.file.to_string_lossy();
        let mut all = self.command[1..].to_vec();
        all.extend(["-f", &file, "-p", &self.project]);
        all.extend_from_slice(args);
        sh(self.command[0], &all)
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = Command::new(self.command[0])
            .args(&self.command[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.project, "down", "--timeout", "1"])
            .output();
    }
}
