//! The dashboard's one task: it reads HAProxy's counters every second, owns
//! the sparkline history, and renders the live part of the page for every
//! open dashboard at once.
//!
//! Reading is sized by who looks: the backends (one line per service, for
//! the history) always; `/status`, with each server's counters, only while
//! a dashboard is open (an event stream, or a page load in the last
//! [`PAGE_WATCH`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::view::{Pages, TrafficNow};
use crate::apply::admin_command;
use crate::status::history::{History, Point};
use crate::status::traffic::{backend_counters, rates, server_counters, Counters, Traffic, SHOW_BACKENDS};
use crate::status::{StatusReport, StatusSources};

/// One reading (and one sparkline point) per second.
pub const READ_EVERY: Duration = Duration::from_secs(1);
/// A page load keeps the servers read this long: a page without
/// JavaScript reloads itself every 5 s.
const PAGE_WATCH: Duration = Duration::from_secs(12);
/// A burst of changes (a rollout's) is shown once it pauses this long.
const CHANGE_QUIET: Duration = Duration::from_millis(100);

/// The live part of the page, rendered.
pub type Frame = Arc<str>;

pub enum Request {
    /// The live part as of now, for a page load.
    Page(oneshot::Sender<Frame>),
    /// Every frame from now on, starting with the current one.
    Subscribe(oneshot::Sender<watch::Receiver<Frame>>),
}

/// Counters and when they were read.
type Reading<K> = Option<(Instant, HashMap<K, Counters>)>;

pub struct Feed {
    sources: StatusSources,
    pages: Arc<Pages>,
    history: History,
    backends: Reading<String>,
    /// `None` while nobody watches: rates across that gap would be
    /// averages shown as now.
    servers: Reading<(String, String)>,
    traffic: TrafficNow,
    frames: watch::Sender<Frame>,
    published: Option<Instant>,
    page_watch_until: Option<Instant>,
}

impl Feed {
    pub fn new(sources: StatusSources, pages: Arc<Pages>) -> Self {
        Self {
            sources,
            pages,
            history: History::default(),
            backends: None,
            servers: None,
            traffic: TrafficNow::default(),
            frames: watch::channel(Frame::from("")).0,
            published: None,
            page_watch_until: None,
        }
    }

    /// Runs until `shutdown`; then every event stream ends (the frames'
    /// sender goes), so the status server can stop.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(READ_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut snapshots = self.sources.snapshots.clone();
        let mut applies = self.sources.last_apply.clone();
        loop {
            let watched = self.watched();
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.read(watched).await,
                Some(request) = requests.recv() => self.answer(request).await,
                // What teal routes changed, or HAProxy took a change: show it
                // now rather than at the next reading.
                Ok(()) = snapshots.changed(), if watched => self.changed(&mut snapshots, &mut applies).await,
                Ok(()) = applies.changed(), if watched => self.changed(&mut snapshots, &mut applies).await,
            }
        }
    }

    fn watched(&self) -> bool {
        self.frames.receiver_count() > 0 || self.page_watch_until.is_some_and(|until| Instant::now() < until)
    }

    async fn answer(&mut self, request: Request) {
        match request {
            Request::Page(reply) => {
                self.page_watch_until = Some(Instant::now() + PAGE_WATCH);
                self.publish_if_stale().await;
                let _ = reply.send(self.frames.borrow().clone());
            }
            Request::Subscribe(reply) => {
                self.publish_if_stale().await;
                let _ = reply.send(self.frames.subscribe());
            }
        }
    }

    async fn changed(
        &mut self,
        snapshots: &mut watch::Receiver<impl Sized>,
        applies: &mut watch::Receiver<impl Sized>,
    ) {
        tokio::time::sleep(CHANGE_QUIET).await;
        snapshots.mark_unchanged();
        applies.mark_unchanged();
        self.publish().await;
    }

    /// One reading: the backends' rates and a point of each service's
    /// sparkline; watched, the servers' rates too, and a new frame.
    async fn read(&mut self, watched: bool) {
        let answer = admin_command(&self.sources.admin_socket, SHOW_BACKENDS)
            .await
            .unwrap_or_default();
        let (services, backends) = advance(self.backends.take(), backend_counters(&answer));
        self.traffic.services = services;
        self.backends = backends;
        self.history
            .push(self.traffic.services.iter().map(|(service, traffic)| {
                (
                    service.as_str(),
                    Point {
                        requests_per_s: traffic.requests_per_s as f32,
                        errors_per_s: traffic.errors_per_s as f32,
                    },
                )
            }));
        if !watched {
            self.servers = None;
            self.traffic.servers.clear();
            return;
        }
        let report = self.sources.report().await;
        let (servers, reading) = advance(self.servers.take(), server_counters(&report));
        self.traffic.servers = servers;
        self.servers = reading;
        self.render(&report);
    }

    async fn publish_if_stale(&mut self) {
        if self.published.is_none_or(|at| at.elapsed() >= READ_EVERY) {
            self.publish().await;
        }
    }

    /// A new frame, with the traffic of the last reading.
    async fn publish(&mut self) {
        let report = self.sources.report().await;
        self.render(&report);
    }

    fn render(&mut self, report: &StatusReport) {
        let html = self.pages.live(report, &self.traffic, &self.history, SystemTime::now());
        self.frames.send_replace(Frame::from(html));
        self.published = Some(Instant::now());
    }
}

/// The rates since the last reading (none for a first one), and the new
/// reading to keep.
fn advance<K: std::hash::Hash + Eq + Clone>(
    last: Reading<K>,
    now: HashMap<K, Counters>,
) -> (HashMap<K, Traffic>, Reading<K>) {
    let at = Instant::now();
    let traffic = match last {
        Some((before_at, before)) => rates(&before, &now, at.duration_since(before_at).as_secs_f64()),
        None => HashMap::new(),
    };
    (traffic, Some((at, now)))
}
