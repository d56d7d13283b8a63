//! Checks that refuse, at start-up, what can never work (a missing haproxy,
//! a `--config` that is a directory, a Docker address teal cannot dial),
//! and warnings for what works but is exposed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A setting that can never work; the message says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "--haproxy {}: {reason}: install haproxy (apt-get install haproxy) or pass --haproxy PATH",
        path.display()
    )]
    NoHaproxy { path: PathBuf, reason: String },
    #[error(
        "--config {}: is a directory; pass the file to write, e.g. --config {}",
        path.display(),
        path.join("haproxy.cfg").display()
    )]
    ConfigIsDirectory { path: PathBuf },
    #[error(
        "{origin} {host:?}: teal cannot connect there; use unix:///PATH (the local socket is \
         unix:///var/run/docker.sock), tcp://HOST:PORT or http://HOST:PORT; for a remote daemon over \
         TLS or SSH, forward its socket (ssh -L /tmp/docker.sock:/var/run/docker.sock HOST) and use \
         unix:///tmp/docker.sock"
    )]
    DockerHost { origin: &'static str, host: String },
    #[error(
        "--state-dir {}: too long for the unix sockets HAProxy makes in it ({socket} would be {len} bytes, \
         at most {MAX_SOCKET_PATH}); pass a shorter one, e.g. --state-dir /var/lib/teal",
        state_dir.display()
    )]
    StateDirTooLong {
        state_dir: PathBuf,
        socket: String,
        len: usize,
    },
    #[error("--canary {steps}: the steps go up, each above the last (e.g. --canary 10,50,100), and --step is above 0")]
    CanarySteps { steps: String },
    #[error("--preview-https-bind needs certificates: add --certs DIR or --acme-email EMAIL, or drop it")]
    PreviewHttpsWithoutTls,
    #[error(transparent)]
    StatusAuth(#[from] crate::status::AuthFileError),
}

/// A unix socket's path: 108 bytes with its terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The longest socket path teal makes HAProxy bind in the state dir (a
/// service's hold) fits.
pub(super) fn socket_paths(state_dir: &Path, longest: &str) -> Result<(), SettingsError> {
    if longest.len() > MAX_SOCKET_PATH {
        return Err(SettingsError::StateDirTooLong {
            state_dir: state_dir.to_owned(),
            socket: longest.to_owned(),
            len: longest.len(),
        });
    }
    Ok(())
}

/// The haproxy executable, looked up as exec would: a name without '/' in
/// PATH, a path as it is.
pub(super) fn haproxy(path: &Path) -> Result<(), SettingsError> {
    which::which(path).map(drop).map_err(|_| {
        let reason = if path.components().count() > 1 {
            "no such executable file"
        } else {
            "not found in PATH"
        };
        SettingsError::NoHaproxy {
            path: path.to_owned(),
            reason: reason.into(),
        }
    })
}

/// teal writes the rendered config to this path (through a file beside it).
pub(super) fn config_file(path: &Path) -> Result<(), SettingsError> {
    if path.is_dir() {
        return Err(SettingsError::ConfigIsDirectory { path: path.to_owned() });
    }
    Ok(())
}

/// The daemon address teal dials: `--docker-host`, else `DOCKER_HOST`
/// (unset: the local socket), refused unless teal's Docker client (no
/// TLS, no SSH), can dial it.
pub(super) fn docker_host(flag: Option<String>) -> Result<Option<String>, SettingsError> {
    let env = std::env::var("DOCKER_HOST").ok();
    resolve_docker_host(flag, env)
}

fn resolve_docker_host(flag: Option<String>, env: Option<String>) -> Result<Option<String>, SettingsError> {
    let (origin, host) = match (flag, env) {
        (Some(host), _) => ("--docker-host", host),
        (None, Some(host)) => ("DOCKER_HOST", host),
        (None, None) => return Ok(None),
    };
    let dialable = ["unix://", "tcp://", "http://"]
        .iter()
        .any(|scheme| host.len() > scheme.len() && host.starts_with(scheme));
    if !dialable {
        return Err(SettingsError::DockerHost { origin, host });
    }
    Ok(Some(host))
}

/// Plain `tcp://` (or `http://`) to the Docker API has no encryption and no
/// authentication: whoever reaches that port controls the daemon.
fn is_plain_tcp(host: &str) -> bool {
    host.starts_with("tcp://") || host.starts_with("http://")
}

pub(super) fn warn_if_plain_docker(host: Option<&str>) {
    if let Some(host) = host.filter(|h| is_plain_tcp(h)) {
        tracing::warn!(
            docker_host = host,
            "the Docker API over plain TCP is unencrypted and unauthenticated: anyone who reaches this port \
             controls the daemon; prefer the unix socket (or a read-only socket proxy on a private network)"
        );
    }
}

/// Beyond loopback without `--status-auth`, anyone who reaches the port
/// reads every container, image and route.
fn status_exposed(bind: SocketAddr, has_auth: bool) -> bool {
    !bind.ip().is_loopback() && !has_auth
}

pub(super) fn warn_if_public_status(bind: SocketAddr, has_auth: bool) {
    if status_exposed(bind, has_auth) {
        tracing::warn!(
            status_bind = %bind,
            "the status endpoint (dashboard, /status, /metrics) listens beyond loopback without --status-auth: \
             anyone who reaches it sees every container, image and route; give it --status-auth FILE \
             (htpasswd -nB USER lines) or bind it to 127.0.0.1"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_host_comes_from_the_flag_then_the_environment() {
        let resolve = |flag: Option<&str>, env: Option<&str>| {
            resolve_docker_host(flag.map(Into::into), env.map(Into::into)).map_err(|e| e.to_string())
        };
        assert_eq!(resolve(None, None), Ok(None));
        assert_eq!(resolve(None, Some("tcp://h:2375")), Ok(Some("tcp://h:2375".into())));
        assert_eq!(
            resolve(Some("unix:///run/d.sock"), Some("tcp://h:2375")),
            Ok(Some("unix:///run/d.sock".into()))
        );
        assert_eq!(resolve(Some("http://h:2375"), None), Ok(Some("http://h:2375".into())));
    }

    #[test]
    fn a_docker_host_teal_cannot_dial_is_refused_naming_its_source() {
        let err = resolve_docker_host(Some("ftp://h".into()), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--docker-host \"ftp://h\""), "{err}");
        assert!(err.contains("unix:///var/run/docker.sock"), "{err}");
        let err = resolve_docker_host(None, Some("ssh://me@h".into()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("DOCKER_HOST \"ssh://me@h\""), "{err}");
        for bad in [
            "https://h:2376",
            "npipe:////./pipe/docker_engine",
            "/var/run/docker.sock",
            "unix://",
        ] {
            assert!(resolve_docker_host(Some(bad.into()), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_state_dir_too_long_for_its_sockets_is_refused() {
        let long = Path::new("/srv").join("d".repeat(90));
        let socket = format!("{}/hold/0123456789abcdef.sock", long.display());
        let error = socket_paths(&long, &socket).unwrap_err().to_string();
        assert!(
            error.contains("pass a shorter one") && error.contains("at most 107"),
            "{error}"
        );
        assert!(socket_paths(Path::new("/var/lib/teal"), "/var/lib/teal/hold/0123456789abcdef.sock").is_ok());
    }

    #[test]
    fn the_status_endpoint_is_exposed_beyond_loopback_without_auth_only() {
        let at = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        assert!(status_exposed(at("0.0.0.0:9180"), false));
        assert!(status_exposed(at("[::]:9180"), false));
        assert!(!status_exposed(at("0.0.0.0:9180"), true));
        assert!(!status_exposed(at("127.0.0.1:9180"), false));
        assert!(!status_exposed(at("[::1]:9180"), false));
    }

    #[test]
    fn plain_tcp_is_told_apart() {
        assert!(is_plain_tcp("tcp://10.0.0.1:2375"));
        assert!(is_plain_tcp("http://proxy:2375"));
        assert!(!is_plain_tcp("unix:///var/run/docker.sock"));
    }

    #[test]
    fn haproxy_is_looked_up_like_exec() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = haproxy(&file).unwrap_err().to_string();
        assert!(err.contains("no such executable file"), "{err}");
        assert!(
            err.contains("install haproxy (apt-get install haproxy) or pass --haproxy PATH"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(haproxy(&file).is_ok());
        assert!(haproxy(dir.path()).is_err(), "a directory is no executable");
        let err = haproxy(Path::new("teal-no-such-haproxy")).unwrap_err().to_string();
        assert!(err.contains("not found in PATH"), "{err}");
        assert!(haproxy(Path::new("sh")).is_ok(), "found in PATH");
    }

    #[test]
    fn a_config_path_that_is_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = config_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(config_file(&dir.path().join("haproxy.cfg")).is_ok());
    }
}
