//! A raw HTTP/1.1 client (one connection per request, `Connection: close`)
//! and a load generator built on it. No client crate: the point is to count
//! exactly what a client would see, connect errors included.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Longer than any retry HAProxy does on our behalf, shorter than a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Status line and headers, as received.
    pub head: String,
    pub body: String,
}

impl Response {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> io::Result<Response> {
    request(addr, host, &format!("GET {path}"), b"").await
}

/// A POST of `body` (held requests carry theirs through the hold).
pub async fn post(addr: SocketAddr, host: &str, path: &str, body: &[u8]) -> io::Result<Response> {
    request(addr, host, &format!("POST {path}"), body).await
}

/// `line`: the method and path of the request line.
async fn request(addr: SocketAddr, host: &str, line: &str, body: &[u8]) -> io::Result<Response> {
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "{line} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: teal-integration\r\n\
         {length}Connection: close\r\n\r\n"
    );
    exchange(addr, &head, body).await
}

/// Sends `head` (which should ask for `Connection: close`) and `body` as
/// they are, and reads the answer to the end.
pub async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> io::Result<Response> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&raw)
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))?
}

fn parse(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if raw.is_empty() {
        return Err(bad("empty response"));
    }
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    Ok(Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// What one request tells a test: the backend's body on 200, else why not.
pub fn describe(result: &io::Result<Response>) -> String {
    match result {
        Ok(r) if r.status == 200 => r.body.trim().to_owned(),
        Ok(r) => format!("HTTP {}", r.status),
        Err(e) => format!("error: {e}"),
    }
}

#[derive(Debug, Default)]
pub struct Seen {
    pub count: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LoadStats {
    pub requests: u64,
    pub failures: u64,
    /// Failure reason -> count (connect errors, timeouts, non-2xx).
    pub errors: BTreeMap<String, u64>,
    /// The body's first word (which container served) -> when and how often.
    pub seen: HashMap<String, Seen>,
}

impl LoadStats {
    /// Who served how many requests, as `body=count` pairs, for test logs.
    pub fn served(&self) -> String {
        self.seen
            .iter()
            .map(|(body, s)| format!("{body}={}", s.count))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// N clients, each in a loop: new connection, one GET, close. Runs until
/// `stop`; the stats are readable while it runs.
pub struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LoadStats>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize) -> Load {
        Self::start_on(addr, clients, "/", |_| true)
    }

    /// GETs `path`; a 2xx answer for which `whole` is false (a body cut
    /// short) counts as failed, as "truncated".
    pub fn start_on(addr: SocketAddr, clients: usize, path: &'static str, whole: fn(&Response) -> bool) -> Load {
        Self::spawn(&tokio::runtime::Handle::current(), addr, clients, path, whole)
    }

    /// The clients on `runtime` (one inside a network namespace, say).
    pub fn start_in(runtime: &tokio::runtime::Handle, addr: SocketAddr, clients: usize) -> Load {
        Self::spawn(runtime, addr, clients, "/", |_| true)
    }

    fn spawn(
        runtime: &tokio::runtime::Handle,
        addr: SocketAddr,
        clients: usize,
        path: &'static str,
        whole: fn(&Response) -> bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let stats = stats.clone();
                runtime.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let result = get(addr, "localhost", path).await;
                        let now = Instant::now();
                        let mut s = stats.lock().unwrap();
                        s.requests += 1;
                        match result {
                            Ok(r) if (200..300).contains(&r.status) && !whole(&r) => {
                                s.failures += 1;
                                *s.errors.entry("truncated".to_owned()).or_default() += 1;
                            }
                            Ok(r) if (200..300).contains(&r.status) => {
                                // A body's first word says which container served it.
                                let server = r.body.split_whitespace().next().unwrap_or_default();
                                let seen = s.seen.entry(server.to_owned()).or_default();
                                seen.count += 1;
                                seen.first.get_or_insert(now);
                                seen.last = Some(now);
                            }
                            other => {
                                s.failures += 1;
                                *s.errors.entry(describe(&other)).or_default() += 1;
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, stats, clients }
    }

    /// When a response with this body first arrived, if one has.
    pub fn first_seen(&self, body: &str) -> Option<Instant> {
        self.stats.lock().unwrap().seen.get(body).and_then(|s| s.first)
    }

    pub fn requests(&self) -> u64 {
        self.stats.lock().unwrap().requests
    }

    pub fn failures(&self) -> u64 {
        self.stats.lock().unwrap().failures
    }

    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("load client panicked");
        }
        std::mem::take(&mut *self.stats.lock().unwrap())
    }
}
