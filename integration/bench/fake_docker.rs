//! A Docker daemon as far as `teal run` reads one, over a unix socket: the
//! version handshake (`/_ping`, `/version`, `/info`), the container listing
//! and inspects, networks, and the event stream. What it holds is scripted:
//! the benchmark adds containers and emits their events, and each event
//! changes what the next inspect says, as Docker's would.
//!
//! Not a Docker: no `since` replay (events are only sent to the streams
//! open when they happen), no filters beyond what teal's requests need, no
//! writes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// The one network every fake container is on.
const NETWORK: &str = "teal-fake";
const NETWORK_ID: &str = "fa4e0000000000000000000000000000000000000000000000000000000000ff";
const API_VERSION: &str = "1.41";

/// One container, as the fake daemon describes it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Its address on [`NETWORK`]: a loopback one, so HAProxy's checks and
    /// any request stay on this machine.
    pub ip: Ipv4Addr,
    pub running: bool,
    started_at: String,
}

impl Container {
    pub fn new(id: String, name: String, labels: HashMap<String, String>, ip: Ipv4Addr) -> Self {
        Self {
            id,
            name,
            labels,
            ip,
            running: false,
            started_at: "0001-01-01T00:00:00Z".to_owned(),
        }
    }

    fn summary(&self) -> Value {
        json!({"Id": self.id, "Names": [format!("/{}", self.name)], "Labels": self.labels, "State": "running"})
    }

    fn inspect(&self) -> Value {
        json!({
            "Id": self.id,
            "Name": format!("/{}", self.name),
            "Created": "2026-01-01T00:00:00.000000000Z",
            "State": {
                "Status": if self.running { "running" } else { "exited" },
                "Running": self.running,
                "Paused": false,
                "Restarting": false,
                "StartedAt": self.started_at,
            },
            "Config": {
                "Image": "app:1",
                "Labels": self.labels,
                "ExposedPorts": {"8080/tcp": {}},
            },
            "HostConfig": {"NetworkMode": NETWORK},
            "NetworkSettings": {"Networks": {NETWORK: {
                "NetworkID": NETWORK_ID,
                "IPAddress": if self.running { self.ip.to_string() } else { String::new() },
            }}},
        })
    }
}

/// A container event, as Docker words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    /// `docker stop`'s SIGTERM.
    Kill,
    Die,
    Stop,
    Destroy,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Kill => "kill",
            Action::Die => "die",
            Action::Stop => "stop",
            Action::Destroy => "destroy",
        }
    }
}

#[derive(Default)]
struct World {
    containers: HashMap<String, Container>,
}

#[derive(Clone)]
struct Shared {
    world: Arc<Mutex<World>>,
    events: broadcast::Sender<Bytes>,
}

/// The daemon; it stops when dropped.
pub struct FakeDocker {
    pub socket: PathBuf,
    shared: Shared,
    /// Its own thread and runtime: what the benchmark does meanwhile (its
    /// polling of HAProxy) never delays an answer or an event.
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeDocker {
    /// Listens on `socket` (replacing a file left there).
    pub fn start(socket: &Path) -> FakeDocker {
        let _ = std::fs::remove_file(socket);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-docker")
            .enable_all()
            .build()
            .expect("fake Docker runtime");
        let listener = {
            let _entered = runtime.enter();
            tokio::net::UnixListener::bind(socket).expect("bind the fake Docker socket")
        };
        // Room for every event of a long burst while a stream is slow.
        let (events, _) = broadcast::channel(1 << 16);
        let shared = Shared {
            world: Arc::default(),
            events,
        };
        let app = axum::Router::new().fallback(answer).with_state(shared.clone());
        runtime.spawn(async move {
            axum::serve(listener, app).await.expect("fake Docker server");
        });
        FakeDocker {
            socket: socket.to_owned(),
            shared,
            runtime: Some(runtime),
        }
    }

    /// `unix:///...`, for `--docker-host`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A container that exists from the start, already running: it is in
    /// the listing, with no event.
    pub fn add_running(&self, mut container: Container) {
        container.running = true;
        container.started_at = now_rfc3339();
        let mut world = self.shared.world.lock().unwrap();
        world.containers.insert(container.id.clone(), container);
    }

    /// A created container, not running yet: [`Action::Start`] starts it.
    pub fn add_created(&self, container: Container) {
        let mut world = self.shared.world.lock().unwrap();
        world.containers.insert(container.id.clone(), container);
    }

    /// Changes the container as Docker would for `action`, then sends the
    /// event to every open stream; returns when it was sent.
    pub fn emit(&self, id: &str, action: Action) -> Instant {
        let attributes = {
            let mut world = self.shared.world.lock().unwrap();
            let Some(container) = world.containers.get_mut(id) else {
                panic!("no fake container {id}");
            };
            match action {
                Action::Start => {
                    container.running = true;
                    container.started_at = now_rfc3339();
                }
                Action::Die => container.running = false,
                Action::Kill | Action::Stop | Action::Destroy => {}
            }
            let mut attributes = container.labels.clone();
            attributes.insert("name".to_owned(), container.name.clone());
            attributes.insert("image".to_owned(), "app:1".to_owned());
            if action == Action::Kill {
                attributes.insert("signal".to_owned(), "15".to_owned());
            }
            if action == Action::Destroy {
                world.containers.remove(id);
            }
            attributes
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let event = json!({
            "Type": "container",
            "Action": action.word(),
            "Actor": {"ID": id, "Attributes": attributes},
            "scope": "local",
            "time": now.as_secs(),
            "timeNano": now.as_nanos() as u64,
        });
        let mut line = serde_json::to_vec(&event).expect("event json");
        line.push(b'\n');
        // No stream open: nobody hears it, as with Docker.
        let _ = self.shared.events.send(Bytes::from(line));
        Instant::now()
    }

    /// Streams open on `/events` now.
    pub fn listeners(&self) -> usize {
        self.shared.events.receiver_count()
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        // Dropped inside the benchmark's runtime, where a blocking
        // shutdown would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// The whole API: bollard prefixes every path with `/v1.NN`.
async fn answer(State(shared): State<Shared>, uri: Uri) -> Response {
    let path = uri.path();
    let path = match path.strip_prefix("/v") {
        Some(rest) => rest.find('/').map_or(path, |slash| &rest[slash..]),
        None => path,
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_ping"] => "OK".into_response(),
        ["version"] => Json(json!({
            "Version": "20.10.24",
            "ApiVersion": API_VERSION,
            "MinAPIVersion": "1.12",
            "Os": "linux",
            "Arch": "amd64",
        }))
        .into_response(),
        ["info"] => Json(json!({"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false}})).into_response(),
        ["containers", "json"] => {
            let world = shared.world.lock().unwrap();
            let listed: Vec<Value> = world
                .containers
                .values()
                .filter(|c| c.running)
                .map(Container::summary)
                .collect();
            Json(Value::Array(listed)).into_response()
        }
        ["containers", id, "json"] => {
            let world = shared.world.lock().unwrap();
            match world.containers.get(*id) {
                Some(container) => Json(container.inspect()).into_response(),
                None => not_found(&format!("No such container: {id}")),
            }
        }
        ["networks", id] if *id == NETWORK_ID || *id == NETWORK => Json(json!({
            "Name": NETWORK,
            "Id": NETWORK_ID,
            "Driver": "bridge",
            "Scope": "local",
        }))
        .into_response(),
        ["networks", id] => not_found(&format!("network {id} not found")),
        ["events"] => {
            let receiver = shared.events.subscribe();
            let stream = futures::stream::unfold(receiver, |mut receiver| async move {
                match receiver.recv().await {
                    Ok(line) => Some((Ok::<_, Infallible>(line), receiver)),
                    // Events lost: the stream ends, so teal lists anew, as
                    // after a broken connection to Docker.
                    Err(broadcast::error::RecvError::Lagged(lost)) => {
                        eprintln!("  (fake Docker: an event stream fell {lost} events behind; ended it)");
                        None
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            });
            Body::from_stream(stream).into_response()
        }
        _ => not_found(&format!("the fake Docker does not serve {path}")),
    }
}

fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": message}))).into_response()
}
