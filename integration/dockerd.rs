//! A private, throw-away dockerd, so a test can stop and restart "Docker"
//! under teal without touching the machine's daemon.
//!
//! Isolation from the shared daemon, and why each flag:
//! - own `--data-root`, `--exec-root`, `--pidfile`, socket and `--config-file`
//!   (the default /etc/docker/daemon.json sets data-root and would clash);
//! - no `--containerd`: dockerd then starts its OWN containerd under
//!   `<exec-root>/containerd` (the shared one lives under /var/run/docker),
//!   and distinct containerd namespaces keep even a shared one apart;
//! - `--bridge=<our bridge>`, not `--bridge=none`: with `none`, dockerd DELETES
//!   the host's `docker0` at start-up (moby `removeDefaultBridgeInterface`),
//!   breaking the shared daemon. We create our own bridge and delete it after;
//! - `--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false`:
//!   no firewall or sysctl changes; `--storage-driver vfs`: no overlay mounts;
//! - `--live-restore`: containers outlive a daemon restart, like in production.
//!
//! Tests use host-network containers only, on their own 127.0.0.1 ports.
//! Drop removes the containers, the daemon, its containerd and shims, the
//! mounts under the temp dir, the bridge and the dir, even after a panic.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::process::Command;

use crate::util::{build_images_script, ensure_images, pids_mentioning, signal, terminate};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct PrivateDockerd {
    dir: Option<TempDir>,
    child: Option<Child>,
    bridge: String,
    namespace: String,
    /// Set once the daemon answered; before that, drop has nothing to remove.
    was_ready: bool,
    /// `unix://<dir>/docker.sock`
    pub host: String,
}

impl PrivateDockerd {
    /// Starts the daemon and loads the test image into it.
    pub async fn start(prefix: &str) -> PrivateDockerd {
        ensure_images();
        // Short: unix socket paths (containerd's, under the exec-root) are
        // limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}d"))
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("daemon.json");
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        let mut bridge: String = format!("{prefix}b");
        bridge.truncate(15); // IFNAMSIZ
        let mut daemon = PrivateDockerd {
            dir: Some(dir),
            child: None,
            bridge,
            namespace: format!("{prefix}ns"),
            was_ready: false,
            host,
        };
        daemon.create_bridge();
        daemon.spawn();
        daemon.wait_ready().await;
        let out = Command::new(build_images_script())
            .args(["--load-into", &daemon.host])
            .output()
            .await
            .expect("run build-test-images.sh --load-into");
        assert!(
            out.status.success(),
            "loading the test image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        daemon
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("dockerd.log")).unwrap_or_default()
    }

    fn create_bridge(&self) {
        // A /24 in 10.254.0.0/16 that no interface uses yet.
        let addrs = output("ip", &["-o", "-4", "addr"]);
        let third = (std::process::id() as usize..)
            .map(|n| n % 250 + 2)
            .take(250)
            .find(|n| !addrs.contains(&format!("10.254.{n}.")))
            .expect("a free 10.254.N.0/24");
        assert!(run_ip(&["link", "add", &self.bridge, "type", "bridge"]));
        let addr = format!("10.254.{third}.1/24");
        assert!(run_ip(&["addr", "add", &addr, "dev", &self.bridge]));
    }

    fn spawn(&mut self) {
        let d = self.path().to_owned();
        let log = File::options()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("dockerd.log");
        let p = |name: &str| d.join(name).into_os_string();
        let child = StdCommand::new("dockerd")
            .arg("--config-file")
            .arg(p("daemon.json"))
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("dockerd.pid"))
            .arg("-H")
            .arg(&self.host)
            .arg("--containerd-namespace")
            .arg(&self.namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{}-plugins", self.namespace))
            .arg("--bridge")
            .arg(&self.bridge)
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
                "--live-restore",
                "--log-level=info",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.child = Some(child);
    }

    fn ping(&self) -> bool {
        StdCommand::new("docker")
            .args(["-H", &self.host, "version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.ping() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("private dockerd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd not ready within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.was_ready = true;
    }

    /// Stops the daemon (SIGTERM, as the pidfile names it) and waits for it.
    /// With live-restore its containers keep running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.path().join("dockerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(child.id() as i32);
        assert_eq!(pid, child.id() as i32, "pidfile names another process");
        signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                eprintln!("private dockerd ignored SIGTERM for {STOP_TIMEOUT:?}; SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running daemon");
        self.spawn();
        self.wait_ready().await;
    }

    fn unmount_all(&self) {
        let root = self.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|target| Path::new(target).starts_with(&root))
            .collect();
        // Deepest first.
        ours.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for target in ours {
            let status = StdCommand::new("umount").args(["-l", target]).status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("cleanup: umount -l {target} failed");
            }
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- private dockerd log (tail) -----");
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        // The daemon must be up to remove its containers cleanly.
        if self.child.is_none() && self.was_ready {
            self.spawn();
            let deadline = Instant::now() + READY_TIMEOUT;
            while !self.ping() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Everything in this daemon belongs to this test.
        let ids = output("docker", &["-H", &self.host, "ps", "-aq"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["-H", &self.host, "rm", "-f", "-v"];
            args.extend(ids);
            let _ = StdCommand::new("docker").args(&args).output();
        }
        self.stop();
        // Its containerd and any shim name our dir on their command line.
        let leftovers = pids_mentioning(&self.path().to_string_lossy());
        terminate(&leftovers, Duration::from_secs(5));
        self.unmount_all();
        run_ip(&["link", "del", &self.bridge]);
        if let Some(dir) = self.dir.take() {
            let path: PathBuf = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("cleanup: remove {}: {e}", path.display());
            }
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    StdCommand::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn run_ip(args: &[&str]) -> bool {
    let out = StdCommand::new("ip").args(args).output().expect("run ip");
    if !out.status.success() {
        eprintln!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success()
}
