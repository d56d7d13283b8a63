//! Small pieces every test needs: unique names, free ports, polling with a
//! deadline, skipping (never under CI), the test image, finding processes a
//! test left behind, and running commands (with an undo list for cleanup).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The image every test container runs (built by scripts/build-test-images.sh).
pub const IMAGE: &str = "teal-test-app:latest";

/// How often `wait_until` re-checks its condition.
const POLL: Duration = Duration::from_millis(50);

/// A name no other test (in this or a parallel test binary) uses:
/// `tt<pid>n<counter>`. It is a valid label prefix and container-name stem.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("tt{}n{}", std::process::id(), n)
}

/// A 127.0.0.1 port nobody listens on right now, and never handed out
/// before in this test binary: the kernel may give a just-released port
/// again, and a test's `--preview-bind` once got the harness's status port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Re-checks `condition` until it holds; panics naming `what` at the deadline.
/// Tests synchronise with this, never with a bare sleep.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = condition();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Like `wait_until`, for a condition that yields a value once it holds.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_for(timeout, condition).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting until {what}"),
    }
}

/// Like `wait_for`, but `None` at the deadline, for a test that has more to
/// say than the harness when it gives up (a container's log).
pub async fn poll_for<T, F, Fut>(timeout: Duration, mut condition: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A test that cannot run on this machine calls this and returns. Under CI
/// (`CI` set) it panics instead: a runner that lost what a test needs must
/// fail, not pass by running nothing.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test may not skip: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn build_images_script() -> PathBuf {
    repo_root().join("scripts/build-test-images.sh")
}

/// Builds the test image once per test binary (quick when it exists).
pub fn ensure_images() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let out = Command::new(build_images_script())
            .output()
            .expect("run scripts/build-test-images.sh");
        assert!(
            out.status.success(),
            "scripts/build-test-images.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Pids of live processes whose command line mentions `needle` (a path only
/// one test owns), excluding this process. Used to find what a test started
/// indirectly (teal's HAProxy, a private dockerd's containerd and shims).
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

pub fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); check its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGTERM each pid, then SIGKILL whatever is still alive after `grace`.
pub fn terminate(pids: &[i32], grace: Duration) {
    use nix::sys::signal::Signal;
    for &pid in pids {
        signal(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    for &pid in pids {
        if alive(pid) {
            signal(pid, Signal::SIGKILL);
        }
    }
}

/// Runs a command, returns trimmed stdout; panics with stderr on failure.
pub async fn run(program: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Commands that undo what a test made, run in reverse order on drop (even
/// when the test panics). Each names exactly one object the test created.
#[derive(Default)]
pub struct Undo(Mutex<Vec<Step>>);

/// A command line and its environment.
type Step = (Vec<String>, Vec<(String, String)>);

impl Undo {
    pub fn push(&self, command: &[&str], env: &[(&str, String)]) {
        let command = command.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((command, env));
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        let steps = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for (command, env) in steps.into_iter().rev() {
            let out = Command::new(&command[0])
                .args(&command[1..])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output();
            match out {
                Ok(out) if !out.status.success() => {
                    eprintln!(
                        "cleanup: {}: {}",
                        command.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                }
                Err(e) => eprintln!("cleanup: {}: {e}", command.join(" ")),
                Ok(_) => {}
            }
        }
    }
}
