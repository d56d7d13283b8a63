//! `--status-auth FILE`: HTTP Basic credentials for the status listener
//! (the dashboard, `/status`, `/metrics`; `/healthz` and `/readyz`, which
//! say only ok or down, stay open for probes).
//!
//! The file is htpasswd's with bcrypt hashes, as `htpasswd -nB USER`
//! prints them: one `user:$2y$...` a line; blank lines and `#` comments
//! are skipped. Other htpasswd hashes (MD5 `$apr1$`, SHA-1, crypt, plain)
//! are refused: they are fast to guess.
//!
//! teal's own commands (`teal status`, `rollout`, `switch`) have no
//! password: the daemon writes a random token to `STATE_DIR/status.token`
//! (0600) at each start, and they send it. Whoever can read the state dir
//! can use HAProxy's admin socket there anyway.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The token file in the state dir.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.token")
}

/// A `--status-auth` file that teal cannot use; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("--status-auth {}: {source}; pass a readable file of `user:bcrypt-hash` lines (htpasswd -nB USER prints one)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--status-auth {}, line {line}: {problem}; each line is `user:bcrypt-hash`, as `htpasswd -nB USER` prints it", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("--status-auth {}: no user in it; add a line with `htpasswd -nB USER >> {}`", path.display(), path.display())]
    Empty { path: PathBuf },
}

/// The users of a `--status-auth` file, with their bcrypt hashes.
#[derive(Clone)]
pub struct StatusUsers {
    users: Arc<HashMap<String, String>>,
}

/// Names only: the hashes stay out of logs and `Debug`.
impl fmt::Debug for StatusUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("StatusUsers").field("users", &names).finish()
    }
}

impl StatusUsers {
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
            .map_err(|(line, problem)| AuthFileError::Line {
                path: path.to_owned(),
                line,
                problem,
            })?
            .ok_or_else(|| AuthFileError::Empty { path: path.to_owned() })
    }

    /// `Err((line number, problem))`; `Ok(None)` when it names no user.
    fn parse(text: &str) -> Result<Option<Self>, (usize, String)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let Some((user, hash)) = line.split_once(':').filter(|(user, _)| !user.is_empty()) else {
                return Err((number, "not `user:hash`".to_owned()));
            };
            if let Err(error) = hash.parse::<bcrypt::HashParts>() {
                return Err((
                    number,
                    format!("the hash of {user:?} is not bcrypt ({error}); make it with `htpasswd -nB {user}`"),
                ));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((number, format!("{user:?} is there twice")));
            }
        }
        Ok((!users.is_empty()).then(|| Self { users: Arc::new(users) }))
    }
}

/// What a request must carry: a user's password, or the local token.
#[derive(Clone)]
pub struct StatusAuth {
    users: StatusUsers,
    token_digest: Arc<[u8; 32]>,
}

impl StatusAuth {
    /// Writes a new token for teal's own commands to `STATE_DIR/status.token`.
    pub fn start(users: StatusUsers, state_dir: &Path) -> std::io::Result<Self> {
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = token_path(state_dir);
        let temporary = path.with_extension("token.new");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        std::io::Write::write_all(&mut file, token.as_bytes())?;
        drop(file);
        std::fs::rename(&temporary, &path)?;
        Ok(Self {
            users,
            token_digest: Arc::new(Sha256::digest(token.as_bytes()).into()),
        })
    }

    /// Without `--status-auth` an old token would only mislead.
    pub fn remove_token(state_dir: &Path) {
        let _ = std::fs::remove_file(token_path(state_dir));
    }

    async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            // Digests compared, not tokens: how long a comparison takes
            // says nothing about the token.
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            return digest == *self.token_digest;
        }
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return false;
        };
        let users = self.users.users.clone();
        // bcrypt is slow on purpose: off the async threads.
        tokio::task::spawn_blocking(move || match users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                // As long as for a known user, so timing does not tell
                // which names exist.
                if let Some(hash) = users.values().next() {
                    let _ = bcrypt::verify(&password, hash);
                }
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// Middleware: the request goes on only with valid credentials.
pub async fn require(State(auth): State<StatusAuth>, request: Request, next: Next) -> Response {
    if auth.allows(request.headers()).await {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "teal's status endpoint needs credentials (--status-auth)\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"teal\", charset=\"UTF-8\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `admin:secret` as `htpasswd -nbB -C 4 admin secret` writes it
    /// (`$2y$`, the same algorithm as the crate's `$2b$`).
    fn admin() -> String {
        let hash = bcrypt::hash("secret", 4).unwrap();
        format!("admin:{}", hash.replacen("$2b$", "$2y$", 1))
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderMap::from_iter([(header::AUTHORIZATION, format!("Basic {encoded}").parse().unwrap())])
    }

    #[test]
    fn reads_htpasswd_bcrypt_lines() {
        let admin = admin();
        let users = StatusUsers::parse(&format!("# who may look\n\n{admin}\nops:{}\n", &admin[6..]))
            .unwrap()
            .unwrap();
        assert_eq!(format!("{users:?}"), r#"StatusUsers { users: ["admin", "ops"] }"#);
        assert!(StatusUsers::parse("# nobody\n").unwrap().is_none());
    }

    #[test]
    fn refuses_lines_it_cannot_check_naming_the_line() {
        let cases = [
            ("admin\n", 1, "not `user:hash`"),
            (":$2y$04$x\n", 1, "not `user:hash`"),
            ("# md5\nadmin:$apr1$abc$def\n", 2, "htpasswd -nB admin"),
            ("admin:secret\n", 1, "is not bcrypt"),
        ];
        for (text, line, words) in cases {
            let (at, problem) = StatusUsers::parse(text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(problem.contains(words), "{text:?}: {problem}");
        }
        let twice = format!("{}\n{}\n", admin(), admin());
        assert!(StatusUsers::parse(&twice).unwrap_err().1.contains("twice"));
    }

    #[test]
    fn the_file_errors_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = StatusUsers::load(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("htpasswd -nB USER"), "{missing}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let error = StatusUsers::load(&empty).unwrap_err().to_string();
        assert!(error.contains("no user in it"), "{error}");
    }

    #[tokio::test]
    async fn lets_in_a_user_with_the_password_or_the_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let users = StatusUsers::parse(&admin()).unwrap().unwrap();
        let auth = StatusAuth::start(users, dir.path()).unwrap();
        assert!(auth.allows(&basic("admin", "secret")).await);
        assert!(!auth.allows(&basic("admin", "wrong")).await);
        assert!(!auth.allows(&basic("root", "secret")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
        let token = std::fs::read_to_string(token_path(dir.path())).unwrap();
        assert_eq!(token.len(), 64);
        let bearer = |t: &str| HeaderMap::from_iter([(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap())]);
        assert!(auth.allows(&bearer(&token)).await);
        assert!(!auth.allows(&bearer("0000")).await);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(token_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
