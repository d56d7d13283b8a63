//! A steady-rate HTTP load: W workers, each sending one GET every W/R
//! seconds, over a new connection per request (CC) or a kept-alive one (KA);
//! or, open loop, one new-connection GET every 1/R seconds however many are
//! still waiting for an answer.
//! Every request is recorded with when it started, how long it took and
//! which container answered, so a run can be cut into phases afterwards.
//!
//! The load runs on a runtime of its own: the scenario around it blocks on
//! `docker run` and `docker stop`, and a worker thread held by those would
//! show up as latency that neither teal nor HAProxy caused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// A new connection per request.
    Close,
    KeepAlive,
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    pub ok: bool,
    /// The container that answered (its hostname, the body's first word);
    /// empty when none did.
    pub server: String,
}

/// What one worker recorded: its samples, and its errors by kind.
type WorkerResult = (Vec<Sample>, HashMap<String, u64>);

/// Bodies (container hostnames) and when each was first seen.
type FirstSeen = Arc<Mutex<HashMap<String, Instant>>>;

pub struct Load {
    pub started: Instant,
    first_seen: FirstSeen,
    workers: Vec<JoinHandle<WorkerResult>>,
    runtime: tokio::runtime::Runtime,
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// The load's own runtime (see the module comment); `on_thread_start` runs
/// on each of its threads first (to enter a network namespace, say).
pub fn load_runtime(on_thread_start: impl Fn() + Send + Sync + 'static) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .on_thread_start(on_thread_start)
        .enable_all()
        .build()
        .expect("load runtime")
}

impl Load {
    /// Runs `rate` requests per second for `duration` against `addr`.
    pub fn start(addr: SocketAddr, rate: u32, workers: u32, duration: Duration, mode: Connections) -> Load {
        Self::start_on(load_runtime(|| {}), addr, "/", rate, workers, duration, mode)
    }

    /// The same on `runtime` (from [`load_runtime`]), GETting `path`; a
    /// worker waits for each answer (a slow one delays its next request).
    pub fn start_on(
        runtime: tokio::runtime::Runtime,
        addr: SocketAddr,
        path: &'static str,
        rate: u32,
        workers: u32,
        duration: Duration,
        mode: Connections,
    ) -> Load {
        let started = Instant::now();
        let first_seen: FirstSeen = Arc::default();
        let period = Duration::from_secs_f64(f64::from(workers) / f64::from(rate));
        let handles = (0..workers)
            .map(|i| {
                let first_seen = first_seen.clone();
                runtime.spawn(async move {
                    // Spread the workers over one period so the rate is even.
                    tokio::time::sleep(period * i / workers).await;
                    worker(addr, path, period, started + duration, started, mode, first_seen).await
                })
            })
            .collect();
        Load {
            started,
            first_seen,
            workers: handles,
            runtime,
        }
    }

    /// `rate` requests per second over new connections, open loop: each is
    /// sent on time whether or not earlier ones have answered, so a stalled
    /// proxy shows as failed requests rather than as fewer requests.
    pub fn start_open(addr: SocketAddr, rate: u32, duration: Duration) -> Load {
        let runtime = load_runtime(|| {});
        let started = Instant::now();
        let first_seen: FirstSeen = Arc::default();
        let period = Duration::from_secs_f64(1.0 / f64::from(rate));
        let seen = first_seen.clone();
        let sender = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut requests = tokio::task::JoinSet::new();
            loop {
                ticker.tick().await;
                let sent = Instant::now();
                if sent >= started + duration {
                    break;
                }
                let seen = seen.clone();
                requests.spawn(async move {
                    let (sample, outcome) =
                        timed_request(addr, "/", Connections::Close, &mut None, sent, started).await;
                    if let Ok(body) = &outcome {
                        seen.lock().unwrap().entry(body.clone()).or_insert_with(Instant::now);
                    }
                    (sample, outcome)
                });
            }
            let (mut samples, mut errors) = WorkerResult::default();
            while let Some(done) = requests.join_next().await {
                let (sample, outcome) = done.expect("load request panicked");
                samples.push(sample);
                if let Err(kind) = outcome {
                    *errors.entry(kind).or_default() += 1;
                }
            }
            (samples, errors)
        });
        Load {
            started,
            first_seen,
            workers: vec![sender],
            runtime,
        }
    }

    /// When a response with this body first arrived.
    pub fn first_seen(&self, body: &str) -> Option<Instant> {
        self.first_seen.lock().unwrap().get(body).copied()
    }

    /// Ends the load now, its samples unread: for a scenario that only
    /// needs [`Load::first_seen`].
    pub fn stop(self) {
        for worker in &self.workers {
            worker.abort();
        }
        self.runtime.shutdown_background();
    }

    /// Waits for the end; samples sorted by send time, and errors by kind.
    pub async fn finish(self) -> WorkerResult {
        let mut samples = Vec::new();
        let mut errors = HashMap::new();
        for worker in self.workers {
            let (s, e) = worker.await.expect("load worker panicked");
            samples.extend(s);
            for (kind, n) in e {
                *errors.entry(kind).or_insert(0) += n;
            }
        }
        samples.sort_by_key(|s| s.at);
        // Every worker has ended; dropping a runtime inside another would panic.
        self.runtime.shutdown_background();
        (samples, errors)
    }
}

async fn worker(
    addr: SocketAddr,
    path: &str,
    period: Duration,
    until: Instant,
    started: Instant,
    mode: Connections,
    first_seen: FirstSeen,
) -> WorkerResult {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut known = std::collections::HashSet::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    loop {
        ticker.tick().await;
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let (sample, outcome) = timed_request(addr, path, mode, &mut conn, sent, started).await;
        samples.push(sample);
        match outcome {
            Ok(body) => {
                if known.insert(body.clone()) {
                    first_seen.lock().unwrap().entry(body).or_insert_with(Instant::now);
                }
            }
            Err(kind) => *errors.entry(kind).or_default() += 1,
        }
    }
    (samples, errors)
}

/// One GET sent at `sent`, within [`TIMEOUT`]: its sample, and the body that
/// answered or why none did ("truncated": a 200 whose body ended short of
/// its Content-Length). A failed connection is not reused.
async fn timed_request(
    addr: SocketAddr,
    path: &str,
    mode: Connections,
    conn: &mut Option<BufReader<TcpStream>>,
    sent: Instant,
    started: Instant,
) -> (Sample, Result<String, String>) {
    let result = tokio::time::timeout(TIMEOUT, request(addr, path, mode, conn)).await;
    let latency = sent.elapsed();
    let outcome = match result {
        // The body's first word names the container that answered.
        Ok(Ok((200, body, true))) => Ok(body.split_whitespace().next().unwrap_or_default().to_owned()),
        Ok(Ok((200, _, false))) => Err("truncated".to_owned()),
        Ok(Ok((status, _, _))) => Err(format!("HTTP {status}")),
        Ok(Err(e)) => Err(format!("{:?}", e.kind())),
        Err(_) => Err("timeout".to_owned()),
    };
    if outcome.is_err() {
        *conn = None;
    }
    let sample = Sample {
        at: sent - started,
        latency,
        ok: outcome.is_ok(),
        server: outcome.clone().unwrap_or_default(),
    };
    (sample, outcome)
}

/// One GET; returns the status, the trimmed body, and whether the body
/// came whole.
async fn request(
    addr: SocketAddr,
    path: &str,
    mode: Connections,
    conn: &mut Option<BufReader<TcpStream>>,
) -> std::io::Result<(u16, String, bool)> {
    let stream = match conn.take() {
        Some(stream) => stream,
        None => BufReader::new(TcpStream::connect(addr).await?),
    };
    let mut stream = stream;
    let connection = if mode == Connections::KeepAlive {
        "keep-alive"
    } else {
        "close"
    };
    let head = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: {connection}\r\n\r\n");
    stream.get_mut().write_all(head.as_bytes()).await?;

    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no status line"))?;
    let mut length = None;
    let mut server_closes = mode == Connections::Close;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            // A client must honour this; HAProxy sends it when an old
            // worker hands the connection back at a reload.
            "connection" if value.trim().eq_ignore_ascii_case("close") => server_closes = true,
            _ => {}
        }
    }
    let mut body = Vec::new();
    let whole = match length {
        Some(n) => {
            // As far as it came: a server that dies mid-body cuts it short.
            (&mut stream).take(n as u64).read_to_end(&mut body).await?;
            body.len() == n
        }
        None => {
            stream.read_to_end(&mut body).await?;
            server_closes = true;
            true
        }
    };
    if !server_closes && whole {
        *conn = Some(stream);
    }
    Ok((status, String::from_utf8_lossy(&body).trim().to_owned(), whole))
}

/// p-th percentile (0..=100) of the latencies, in milliseconds.
pub fn percentile(samples: &[&Sample], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let index = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
    latencies[index].as_secs_f64() * 1000.0
}
