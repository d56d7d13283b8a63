//! The dashboard at `/` of `--status-bind`: what teal routes, why, and how
//! the traffic is doing, live.
//!
//! - `GET /`: the whole page, readable as it is (a plain table; without
//!   JavaScript it reloads itself every 5 s).
//! - `GET /dashboard/events`: server-sent events, one `frame` (the live part,
//!   rendered) whenever it changes and at least every second; `live.js`
//!   swaps it in. One renderer, in Rust, for both.
//! - `GET /dashboard/{style.css,live.js,icon.svg}`: embedded in the binary.
//!
//! Read-only, and the page loads nothing from anywhere else: its
//! Content-Security-Policy lets the browser fetch from this listener only.

mod feed;
mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::StatusSources;
use feed::{Feed, Frame, Request};
use view::Pages;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");
const ICON: &str = include_str!("icon.svg");

/// Everything from this listener, nothing inline but the SVG sparklines
/// (elements, not resources), nothing from elsewhere.
const POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                      img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How long a page load waits for the feed (it asks HAProxy, which answers
/// within its socket timeout or not at all).
const FEED_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Dashboard {
    feed: mpsc::Sender<Request>,
    pages: Arc<Pages>,
}

/// The dashboard's routes, and its feed task (ends on `shutdown`).
pub fn routes(sources: StatusSources, shutdown: CancellationToken) -> (Router, tokio::task::JoinHandle<()>) {
    let pages = Arc::new(Pages::default());
    let (requests_tx, requests_rx) = mpsc::channel(64);
    let feed = tokio::spawn(Feed::new(sources, pages.clone()).run(requests_rx, shutdown));
    let router = Router::new()
        .route("/", get(page))
        .route("/dashboard/events", get(events))
        .route("/dashboard/style.css", get(|| asset(STYLE, "text/css; charset=utf-8")))
        .route(
            "/dashboard/live.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route("/dashboard/icon.svg", get(|| asset(ICON, "image/svg+xml")))
        .with_state(Dashboard {
            feed: requests_tx,
            pages,
        });
    (router, feed)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Asks the feed; `None` when it has stopped or does not answer in time.
async fn ask<T>(dashboard: &Dashboard, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    dashboard.feed.send(request(reply)).await.ok()?;
    tokio::time::timeout(FEED_TIMEOUT, answer).await.ok()?.ok()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "teal's dashboard feed is not answering (teal is stopping, or HAProxy's admin socket hangs); /status may still answer\n",
    )
        .into_response()
}

async fn page(State(dashboard): State<Dashboard>) -> Response {
    let Some(live) = ask(&dashboard, Request::Page).await else {
        return unavailable();
    };
    let mut response = Html(dashboard.pages.page(&live)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn events(State(dashboard): State<Dashboard>) -> Response {
    match ask(&dashboard, Request::Subscribe).await {
        Some(frames) => Sse::new(frame_events(frames))
            .keep_alive(KeepAlive::default())
            .into_response(),
        None => unavailable(),
    }
}

/// The current frame, then each new one; ends when the feed stops.
fn frame_events(frames: watch::Receiver<Frame>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((frames, true), |(mut frames, first)| async move {
        if !first {
            frames.changed().await.ok()?;
        }
        let frame = frames.borrow_and_update().clone();
        Some((Ok(Event::default().event("frame").data(&*frame)), (frames, false)))
    })
}
