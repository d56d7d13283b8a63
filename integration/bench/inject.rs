//! How the fault benchmark breaks things: the files and processes each
//! fault needs, made here with the openssl CLI and plain file writes.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::stack::processes_mentioning;

/// HAProxy refuses a line of more than 64 words; each name is one word.
pub fn many_hosts(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("h{i}.{prefix}.test"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `--certs` directory holding one good certificate, and a scratch
/// directory beside it where files are made before they are renamed in.
pub struct Certs {
    root: TempDir,
}

impl Certs {
    pub fn new(name: &str) -> Certs {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("certs")).expect("certs dir");
        let (cert, key) = crate::self_signed::self_signed(name);
        let pem = cert + &key;
        let certs = Certs { root };
        certs.put(&format!("{name}.pem"), &pem);
        certs
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("certs")
    }

    /// A PEM file with no valid certificate in it, as `file`.
    pub fn add_broken(&self, file: &str) {
        self.put(
            file,
            "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
        );
    }

    fn put(&self, file: &str, text: &str) {
        let staged = self.root.path().join(file);
        std::fs::write(&staged, text).expect("write pem");
        std::fs::rename(&staged, self.dir().join(file)).expect("rename pem");
    }
}

/// A copy of the default template in a directory of its own, for `--template`.
pub struct Template {
    dir: TempDir,
}

/// Renders, but HAProxy does not know the keyword.
pub const REFUSED_KEYWORD: &str = "no-such-keyword-teal";

impl Template {
    pub fn new() -> Template {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("haproxy.cfg.hbs"), default_template()).expect("write template");
        Template { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg.hbs")
    }

    /// Replaces the template (by rename, as editors do) with one HAProxy refuses.
    pub fn break_it(&self) {
        let refused = default_template().replacen("defaults\n", &format!("defaults\n    {REFUSED_KEYWORD}\n"), 1);
        let staged = self.dir.path().join("next.hbs");
        std::fs::write(&staged, refused).expect("write template");
        std::fs::rename(&staged, self.path()).expect("rename template");
    }
}

fn default_template() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("haproxy/haproxy.cfg.hbs");
    std::fs::read_to_string(path).expect("haproxy/haproxy.cfg.hbs")
}

/// A 127.0.0.1 port this process listens on (and never answers) until dropped.
pub fn hold_port() -> TcpListener {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0")
}

/// HAProxy master processes of the teal whose state dir is `dir`: the
/// haproxy processes naming it whose parent is not one of them.
pub fn haproxy_masters(dir: &Path) -> Vec<i32> {
    let ours: Vec<(i32, i32)> = processes_mentioning(&dir.to_string_lossy())
        .into_iter()
        .filter(|(pid, _)| is_haproxy(*pid))
        .collect();
    ours.iter()
        .filter(|(_, ppid)| !ours.iter().any(|(pid, _)| pid == ppid))
        .map(|(pid, _)| *pid)
        .collect()
}

fn is_haproxy(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "haproxy")
}

pub fn sigkill(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}
