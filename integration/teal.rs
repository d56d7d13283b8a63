//! The `teal run` fixture: the real binary with its own temp state dir, its
//! own 127.0.0.1 ports and label prefix, `--reload supervise`, its log in a
//! file (printed, with the rendered config, when the test fails), and a
//! SIGTERM on drop that must also take its HAProxy down.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::docker::Container;
use crate::http::{self, describe, Response};
use crate::util::{free_addr, pids_mentioning, signal, terminate, wait_for, wait_until};

/// Start-up budget: discovery, first render, `haproxy -c`, HAProxy listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long teal gets to stop itself and its HAProxy after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TealBuilder {
    prefix: String,
    docker_host: Option<String>,
    template: Option<PathBuf>,
    /// A state dir that outlives this teal (to restart on it); else a temp one.
    state_dir: Option<PathBuf>,
    /// `--config`; else `haproxy.cfg` in the temp dir.
    config: Option<PathBuf>,
    /// `--http-bind`; else a free 127.0.0.1 port.
    http: Option<SocketAddr>,
    /// Run teal under this umask (octal, as the shell says it).
    umask: Option<&'static str>,
    extra_args: Vec<String>,
}

pub struct Teal {
    child: Child,
    dir: TempDir,
    pub http: SocketAddr,
    /// `--status-bind`: where `teal status`, `rollout` and `switch` find it.
    pub status: SocketAddr,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub prefix: String,
    stopped: bool,
}

/// What `Teal::stop` found.
pub struct Stopped {
    pub status: ExitStatus,
    /// Processes still mentioning teal's temp dir (an orphaned HAProxy) after
    /// teal exited; they have been killed since.
    pub orphans: Vec<String>,
}

impl TealBuilder {
    pub fn docker_host(mut self, host: &str) -> Self {
        self.docker_host = Some(host.to_owned());
        self
    }

    pub fn template(mut self, path: &Path) -> Self {
        self.template = Some(path.to_owned());
        self
    }

    pub fn state_dir(mut self, path: &Path) -> Self {
        self.state_dir = Some(path.to_owned());
        self
    }

    /// The same `--config` as an earlier teal on the same state dir, so that
    /// this one can adopt its HAProxy.
    pub fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_owned());
        self
    }

    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    pub fn umask(mut self, umask: &'static str) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Any other `teal run` flag(s), e.g. `--preview-bind`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Spawns `teal run` and waits until its HAProxy answers HTTP.
    pub async fn start(self) -> Teal {
        let mut teal = self.spawn();
        teal.wait_listening().await;
        teal
    }

    /// Spawns `teal run` without waiting for anything.
    pub fn spawn(self) -> Teal {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", self.prefix))
            .tempdir()
            .expect("temp dir");
        let state = match &self.state_dir {
            Some(state) => state.clone(),
            None => dir.path().join("state"),
        };
        let config = self.config.clone().unwrap_or_else(|| dir.path().join("haproxy.cfg"));
        let log = File::create(dir.path().join("teal.log")).expect("log file");
        let http = self.http.unwrap_or_else(free_addr);

        let mut cmd = match self.umask {
            None => Command::new(env!("CARGO_BIN_EXE_teal")),
            Some(umask) => {
                // exec: the pid stays teal's.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_teal"));
                sh
            }
        };
        // Hermetic: nothing from the caller's TEAL_* leaks in.
        for (key, _) in std::env::vars() {
            if key.starts_with("TEAL_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("run")
            .arg("--label-prefix")
            .arg(&self.prefix)
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .arg("--haproxy")
            .arg("/usr/sbin/haproxy")
            .arg("--reload")
            .arg("supervise")
            .arg("--http-bind")
            .arg(http.to_string())
            .arg("--debounce")
            .arg("50ms")
            .arg("--log-format")
            .arg("text");
        if let Some(host) = &self.docker_host {
            cmd.arg("--docker-host").arg(host);
        }
        if let Some(template) = &self.template {
            cmd.arg("--template").arg(template);
        }
        cmd.args(&self.extra_args);
        let status = free_addr();
        // Through the env twin: an older build without the flag ignores it,
        // and parallel tests never fight over the default 127.0.0.1:9180.
        cmd.env("TEAL_STATUS_BIND", status.to_string())
            // A service with nothing ready answers 503 at once, as the tests
            // that wait for one expect; the hold tests pass --hold.
            .env("TEAL_HOLD", "0")
            .env("TEAL_LOG", "info,teal=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn teal");
        Teal {
            child,
            dir,
            http,
            status,
            state_dir: state,
            config,
            prefix: self.prefix,
            stopped: false,
        }
    }
}

impl Teal {
    pub fn builder(prefix: &str) -> TealBuilder {
        TealBuilder {
            prefix: prefix.to_owned(),
            docker_host: None,
            template: None,
            state_dir: None,
            config: None,
            http: None,
            umask: None,
            extra_args: Vec::new(),
        }
    }

    async fn wait_listening(&mut self) {
        let what = format!("HAProxy answers on {}", self.http);
        let (http, child) = (self.http, &mut self.child);
        wait_until(START_TIMEOUT, &what, || {
            if let Some(status) = child.try_wait().expect("try_wait teal") {
                panic!("teal exited during start-up ({status})");
            }
            async move { http::get(http, "localhost", "/").await.is_ok() }
        })
        .await;
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// teal's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("teal.log")).unwrap_or_default()
    }

    /// The haproxy.cfg teal last wrote (`--config`).
    pub fn config(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// `/metrics` as `name{labels}` -> value, each sample line checked.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let response = http::get(self.status, "localhost", "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(response.status, 200, "GET /metrics: {}", response.body);
        parse_metrics(&response.body)
    }

    /// One sample of `/metrics`, e.g. `teal_reloads_total{result="ok"}`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metrics().await.get(name).copied()
    }

    /// HAProxy reloads and starts that succeeded so far.
    pub async fn reloads(&self) -> f64 {
        self.metric("teal_reloads_total{result=\"ok\"}").await.unwrap_or(0.0)
    }

    /// `/status`, read as `teal status` reads it.
    pub async fn report(&self) -> anyhow::Result<teal::status::StatusReport> {
        teal::status::fetch(self.status, &self.state_dir).await
    }

    /// Why `/status` says this container is left out, if it does.
    pub async fn excluded_reason(&self, container: &Container) -> Option<String> {
        let report = self.report().await.ok()?;
        report
            .excluded
            .into_iter()
            .find(|e| e.container_name == container.name)
            .map(|e| e.reason)
    }

    /// Waits until `/status` leaves this container out for a reason that
    /// contains `words`; the reason.
    pub async fn wait_excluded(&self, container: &Container, words: &str, timeout: Duration) -> String {
        let what = format!("/status leaves {} out: {words}", container.name);
        wait_for(timeout, &what, || async {
            self.excluded_reason(container).await.filter(|r| r.contains(words))
        })
        .await
    }

    pub async fn get(&self) -> io::Result<Response> {
        http::get(self.http, "localhost", "/").await
    }

    /// The body of one request (which container served it), or why it failed.
    pub async fn served(&self) -> String {
        describe(&self.get().await)
    }

    pub async fn sample(&self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.served().await);
        }
        out
    }

    /// Waits until some request is answered by a container with this body.
    pub async fn wait_served_by(&self, body: &str, timeout: Duration) {
        wait_until(timeout, &format!("{body} is served"), || async {
            self.served().await == body
        })
        .await;
    }

    /// Waits until 10 requests in a row are each answered by one of `bodies`.
    pub async fn wait_only(&self, bodies: &[&str], timeout: Duration) {
        let what = format!("only {bodies:?} answer");
        self.wait_all(timeout, &what, |s| bodies.contains(&s)).await;
    }

    /// Waits until 10 requests in a row are refused by HAProxy (any non-2xx
    /// status), i.e. no container serves them.
    pub async fn wait_unserved(&self, timeout: Duration) {
        self.wait_all(timeout, "no container answers", |s| s.starts_with("HTTP "))
            .await;
    }

    /// Waits until 10 requests in a row each satisfy `ok` (see `served`).
    pub async fn wait_all(&self, timeout: Duration, what: &str, ok: impl Fn(&str) -> bool) {
        let what = format!("10 requests in a row: {what}");
        wait_until(timeout, &what, || async {
            for _ in 0..10 {
                if !ok(&self.served().await) {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// SIGKILL, as a crash or the OOM killer would: its HAProxy stays
    /// (the caller stops it, through a later teal or a guard).
    pub fn kill(&mut self) {
        self.stopped = true;
        signal(self.pid(), Signal::SIGKILL);
        self.child.wait().expect("wait teal");
    }

    /// SIGTERM, wait for teal to exit, then check its HAProxy went too.
    pub fn stop(&mut self) -> Stopped {
        self.stopped = true;
        signal(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait teal") {
                break status;
            }
            if Instant::now() >= deadline {
                eprintln!("teal did not exit {STOP_TIMEOUT:?} after SIGTERM; SIGKILL");
                let _ = self.child.kill();
                break self.child.wait().expect("wait teal");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Any process naming our temp dir or state dir (haproxy -f
        // DIR/haproxy.cfg -S STATE/master.sock) is ours, an adopted one too.
        let needles = [self.dir().to_owned(), self.state_dir.clone()];
        let ours = || {
            let mut pids: Vec<i32> = needles
                .iter()
                .flat_map(|n| pids_mentioning(&n.to_string_lossy()))
                .collect();
            pids.sort_unstable();
            pids.dedup();
            pids
        };
        let mut orphans = ours();
        let grace = Instant::now() + Duration::from_secs(2);
        while !orphans.is_empty() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(50));
            orphans = ours();
        }
        let described = orphans
            .iter()
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        terminate(&orphans, Duration::from_secs(2));
        Stopped {
            status,
            orphans: described,
        }
    }
}

/// Parses OpenMetrics text into `name{labels}` -> value, checking every
/// sample line has that shape.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value = value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            (name.to_owned(), value)
        })
        .collect()
}

impl Drop for Teal {
    fn drop(&mut self) {
        if !self.stopped {
            let stopped = self.stop();
            if !stopped.orphans.is_empty() {
                eprintln!("teal left processes behind: {:?}", stopped.orphans);
            }
        }
        // TEAL_IT_LOGS=1 shows the log of passing tests too.
        if std::thread::panicking() || std::env::var_os("TEAL_IT_LOGS").is_some() {
            eprintln!(
                "----- teal log ({}) -----\n{}\n----- rendered haproxy.cfg -----\n{}\n-----",
                self.prefix,
                self.log(),
                self.config()
            );
        }
    }
}
