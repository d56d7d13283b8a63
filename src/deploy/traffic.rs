//! A deploy's traffic, per server, from HAProxy's cumulative counters as
//! `/status` reports them: sampled every [`EVERY`] while the deploy runs,
//! so a server removed before the end keeps what it last showed, and a
//! counter that starts again (a reload starts a new worker) is carried
//! over rather than lost. A server already there at the start counts from
//! its first sample; one added later, from 0.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::status::{self, ServerCounters, StatusReport};

/// How often the sampler reads `/status`.
pub const EVERY: Duration = Duration::from_millis(250);

/// What a set of servers served: the sums of their counters, and their
/// response times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Servers that showed up in HAProxy.
    pub servers: usize,
    pub requests: u64,
    pub responses_5xx: u64,
    pub retries: u64,
    pub redispatches: u64,
    pub connection_errors: u64,
    pub response_errors: u64,
    /// HAProxy's average over each server's last 1024 requests, weighted
    /// by the requests each served.
    pub response_time_avg_ms: u64,
    /// The longest response time any of them showed.
    pub response_time_max_ms: u64,
}

impl Traffic {
    /// The servers among `totals` whose container id is in `ids`.
    pub fn of(totals: &Totals, ids: &[&str]) -> Self {
        let mut traffic = Traffic::default();
        let mut weighted = 0u128;
        for id in ids {
            let Some(t) = totals.get(*id) else { continue };
            traffic.servers += 1;
            traffic.requests += t.requests;
            traffic.responses_5xx += t.responses_5xx;
            traffic.retries += t.retries;
            traffic.redispatches += t.redispatches;
            traffic.connection_errors += t.connection_errors;
            traffic.response_errors += t.response_errors;
            traffic.response_time_max_ms = traffic.response_time_max_ms.max(t.response_time_max_ms);
            weighted += u128::from(t.response_time_ms) * u128::from(t.requests);
        }
        if traffic.requests > 0 {
            traffic.response_time_avg_ms = (weighted / u128::from(traffic.requests)) as u64;
        }
        traffic
    }

    /// What was served between `earlier` and `self` (cumulative counts;
    /// the response times are `self`'s).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            servers: self.servers,
            requests: self.requests.saturating_sub(earlier.requests),
            responses_5xx: self.responses_5xx.saturating_sub(earlier.responses_5xx),
            retries: self.retries.saturating_sub(earlier.retries),
            redispatches: self.redispatches.saturating_sub(earlier.redispatches),
            connection_errors: self.connection_errors.saturating_sub(earlier.connection_errors),
            response_errors: self.response_errors.saturating_sub(earlier.response_errors),
            response_time_avg_ms: self.response_time_avg_ms,
            response_time_max_ms: self.response_time_max_ms,
        }
    }

    /// Responses that failed, as a client sees them: 5xx, plus responses
    /// that broke off and connections that failed.
    pub fn errors(&self) -> u64 {
        self.responses_5xx + self.response_errors + self.connection_errors
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} server{}, {} requests, {} 5xx, {} retries, {} redispatches, {} connection errors, {} response \
             errors, response time avg {} ms, max {} ms",
            self.servers,
            if self.servers == 1 { "" } else { "s" },
            self.requests,
            self.responses_5xx,
            self.retries,
            self.redispatches,
            self.connection_errors,
            self.response_errors,
            self.response_time_avg_ms,
            self.response_time_max_ms
        )
    }
}

/// Container id -> its counters over the deploy so far.
pub type Totals = HashMap<String, ServerCounters>;

/// One server's counters as the sampler follows them.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Its counts at the deploy's start (0 for a server added since).
    base: ServerCounters,
    /// What it counted before its counters last started again.
    carried: ServerCounters,
    last: ServerCounters,
}

impl Tally {
    fn observe(&mut self, now: ServerCounters) {
        if now.requests < self.last.requests {
            // A new worker: what the old one counted is kept.
            self.carried = add(&self.carried, &minus(&self.last, &self.base));
            self.base = ServerCounters::default();
        }
        self.last = now;
    }

    fn total(&self) -> ServerCounters {
        let mut total = add(&self.carried, &minus(&self.last, &self.base));
        total.response_time_ms = self.last.response_time_ms;
        total.response_time_max_ms = self.last.response_time_max_ms.max(self.carried.response_time_max_ms);
        total
    }
}

fn minus(a: &ServerCounters, b: &ServerCounters) -> ServerCounters {
    ServerCounters {
        requests: a.requests.saturating_sub(b.requests),
        responses_5xx: a.responses_5xx.saturating_sub(b.responses_5xx),
        retries: a.retries.saturating_sub(b.retries),
        redispatches: a.redispatches.saturating_sub(b.redispatches),
        connection_errors: a.connection_errors.saturating_sub(b.connection_errors),
        response_errors: a.response_errors.saturating_sub(b.response_errors),
        response_time_ms: a.response_time_ms,
        response_time_max_ms: a.response_time_max_ms,
    }
}

fn add(a: &ServerCounters, b: &ServerCounters) -> ServerCounters {
    ServerCounters {
        requests: a.requests + b.requests,
        responses_5xx: a.responses_5xx + b.responses_5xx,
        retries: a.retries + b.retries,
        redispatches: a.redispatches + b.redispatches,
        connection_errors: a.connection_errors + b.connection_errors,
        response_errors: a.response_errors + b.response_errors,
        response_time_ms: b.response_time_ms,
        response_time_max_ms: a.response_time_max_ms.max(b.response_time_max_ms),
    }
}

#[derive(Default)]
struct Tallies {
    by_id: HashMap<String, Tally>,
    /// The first sample is the deploy's start.
    started: bool,
}

impl Tallies {
    fn observe(&mut self, report: &StatusReport, service: &str) {
        let servers = report
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| s.servers.iter());
        for server in servers {
            let Some(now) = server.counters else { continue };
            let at_start = !self.started;
            self.by_id
                .entry(server.container_id.clone())
                .or_insert_with(|| Tally {
                    base: if at_start { now } else { ServerCounters::default() },
                    ..Tally::default()
                })
                .observe(now);
        }
        self.started = true;
    }

    fn totals(&self) -> Totals {
        self.by_id.iter().map(|(id, t)| (id.clone(), t.total())).collect()
    }
}

/// Samples one service's servers in the background.
///
/// One sample at a time, each taken whole (fetched, then observed) before
/// the next is fetched: two fetches in flight at once can answer out of
/// order, and an older sample seen after a newer one looks like a counter
/// that started again, which would count what came before it twice (seen:
/// a rollout's report counting more requests than the clients sent).
pub struct Sampler {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

struct Shared {
    status_addr: SocketAddr,
    /// Where the daemon's `--status-auth` token is.
    state_dir: PathBuf,
    service: String,
    tallies: Mutex<Tallies>,
    /// Held from a sample's fetch to its observation.
    turn: tokio::sync::Mutex<()>,
}

impl Shared {
    async fn fetch(&self) -> anyhow::Result<StatusReport> {
        let _turn = self.turn.lock().await;
        let report = status::fetch(self.status_addr, &self.state_dir).await?;
        lock(&self.tallies).observe(&report, &self.service);
        Ok(report)
    }
}

impl Sampler {
    /// Takes the first sample (the deploy's start), then one every [`EVERY`].
    pub async fn start(status_addr: SocketAddr, state_dir: &Path, service: &str) -> Self {
        let sampler = Self {
            shared: Arc::new(Shared {
                status_addr,
                state_dir: state_dir.to_owned(),
                service: service.to_owned(),
                tallies: Mutex::default(),
                turn: tokio::sync::Mutex::new(()),
            }),
            stop: CancellationToken::new(),
        };
        sampler.sample().await;
        let (shared, stop) = (sampler.shared.clone(), sampler.stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(EVERY) => {}
                }
                let _ = shared.fetch().await;
            }
        });
        sampler
    }

    /// Samples now: before a server is removed, at a step's end.
    pub async fn sample(&self) {
        let _ = self.shared.fetch().await;
    }

    /// Samples now, and gives the caller the report it was taken from.
    pub async fn fetch(&self) -> anyhow::Result<StatusReport> {
        self.shared.fetch().await
    }

    /// Each server's counts since the deploy began, as of the last sample.
    pub fn totals(&self) -> Totals {
        lock(&self.shared.tallies).totals()
    }

    /// A last sample, and the totals.
    pub async fn stop(self) -> Totals {
        self.stop.cancel();
        self.sample().await;
        self.totals()
    }
}

fn lock(tallies: &Mutex<Tallies>) -> std::sync::MutexGuard<'_, Tallies> {
    tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: u64, responses_5xx: u64, rtime: u64) -> ServerCounters {
        ServerCounters {
            requests,
            responses_5xx,
            response_time_ms: rtime,
            response_time_max_ms: rtime * 2,
            ..ServerCounters::default()
        }
    }

    #[test]
    fn counts_from_the_start_across_a_restart_and_from_zero_for_new_servers() {
        let mut old = Tally {
            base: counters(100, 1, 5),
            ..Tally::default()
        };
        old.observe(counters(100, 1, 5));
        old.observe(counters(150, 3, 5));
        // A reload: the new worker counts from 0.
        old.observe(counters(20, 1, 7));
        let total = old.total();
        assert_eq!(
            (total.requests, total.responses_5xx, total.response_time_ms),
            (70, 3, 7)
        );

        let totals = Totals::from([("old".to_owned(), total), ("new".to_owned(), counters(30, 0, 4))]);
        let both = Traffic::of(&totals, &["old", "new", "gone"]);
        assert_eq!((both.servers, both.requests, both.responses_5xx), (2, 100, 3));
        // (70 * 7 + 30 * 4) / 100
        assert_eq!(both.response_time_avg_ms, 6);
        assert_eq!(both.response_time_max_ms, 14);
        let later = Traffic {
            requests: 130,
            responses_5xx: 4,
            ..both
        };
        assert_eq!((later.since(&both).requests, later.since(&both).errors()), (30, 1));
    }
}
