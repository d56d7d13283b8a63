//! The Swarm calls bollard cannot make in full, and their answers turned
//! into [`ContainerFacts`].
//!
//! bollard's `Task` has no `NetworksAttachments`, the one place a manager
//! says which address a task has on each overlay (for tasks on every node,
//! not only this one). So `/services`, `/tasks` and, beside them, `/nodes`
//! are read here with a plain HTTP/1.0 GET on the daemon's socket, into the
//! few fields teal uses. A service's spec is also sent back from here as
//! the daemon wrote it ([`super::service_update`]): bollard reads
//! `Healthcheck` as `HealthCheck` and would drop it on the way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::{ContainerFacts, ContainerId, Health, NetworkAddress};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub task_template: TaskTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskTemplate {
    #[serde(default)]
    pub container_spec: ContainerSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    #[serde(default)]
    pub state: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    pub slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub desired_state: String,
    #[serde(default)]
    pub networks_attachments: Vec<NetworkAttachment>,
    /// The spec the task was made from: mid-update, not the service's.
    #[serde(default)]
    pub spec: TaskTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub state: String,
    pub container_status: Option<TaskContainer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskContainer {
    #[serde(rename = "ContainerID", default)]
    pub container_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    #[serde(default)]
    pub network: AttachedNetwork,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetwork {
    #[serde(default)]
    pub spec: AttachedNetworkSpec,
    pub driver_state: Option<Driver>,
}

impl AttachedNetwork {
    /// Overlay unless a driver says otherwise (swarm-scoped macvlan, say):
    /// when in doubt, assume the address is reachable only from the overlay.
    fn overlay(&self) -> bool {
        [self.driver_state.as_ref(), self.spec.driver_configuration.as_ref()]
            .into_iter()
            .flatten()
            .map(|d| d.name.as_str())
            .find(|name| !name.is_empty())
            .is_none_or(|name| name == "overlay")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetworkSpec {
    #[serde(default)]
    pub name: String,
    pub driver_configuration: Option<Driver>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Driver {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub description: NodeDescription,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDescription {
    #[serde(default)]
    pub hostname: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    /// `ready`, `down`, `unknown` or `disconnected`.
    #[serde(default)]
    pub state: String,
}

impl Node {
    /// Swarm hears from it: `down` is its verdict after missed heartbeats
    /// (about 12 s with the default 5 s heartbeat), `unknown` before the
    /// first one.
    pub fn ready(&self) -> bool {
        self.status.state == "ready"
    }

    /// The name people know it by (`docker node ls`), else its id.
    pub fn name(&self) -> &str {
        if self.description.hostname.is_empty() {
            &self.id
        } else {
            &self.description.hostname
        }
    }
}

impl Task {
    /// The image the task runs: its own spec's (an old task keeps the image
    /// it was made with while an update runs), else the service's.
    pub fn image<'a>(&'a self, service: &'a Service) -> &'a str {
        Some(self.spec.container_spec.image.as_str())
            .filter(|image| !image.is_empty())
            .unwrap_or(&service.spec.task_template.container_spec.image)
    }

    pub fn container_id(&self) -> Option<&str> {
        self.status
            .container_status
            .as_ref()
            .map(|c| c.container_id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// Its container runs (`starting` is a container waiting for its first
    /// passing healthcheck).
    pub fn container_runs(&self) -> bool {
        matches!(self.status.state.as_str(), "starting" | "running")
    }

    /// Swarm has decided to stop it (a rolling update, a scale down): the
    /// container still runs, but must get no new requests.
    pub fn stopping(&self) -> bool {
        self.container_runs() && self.desired_state != "running"
    }

    /// Swarm wants it stopped but cannot stop it: its node is down (or
    /// gone), and Swarm has started a replacement elsewhere. No request can
    /// drain through an unreachable node, so teal lets the task go: its
    /// address leaves HAProxy (it may be another task's later).
    pub fn abandoned(&self, node: Option<&Node>) -> bool {
        self.stopping() && !node.is_some_and(Node::ready)
    }

    /// Not where Swarm wants it yet: worth looking again soon.
    pub fn in_flux(&self) -> bool {
        self.stopping()
            || matches!(
                self.status.state.as_str(),
                "new" | "pending" | "assigned" | "accepted" | "preparing" | "ready" | "starting"
            )
    }
}

/// What this node's daemon says about a task's container: only a task on
/// this node has one. Its healthcheck result is fresher than the task state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContainer {
    pub health: Health,
    pub paused: bool,
    pub exposed_tcp_ports: Vec<u16>,
}

/// A running task as a container the model knows how to route: labels from
/// the service, an address on each network the task is attached to, the
/// name of its node. `exposed_tcp_ports` is the image's, when this daemon
/// has the image.
pub fn task_facts(
    service: &Service,
    task: &Task,
    node: Option<&Node>,
    local: Option<&LocalContainer>,
    exposed_tcp_ports: &[u16],
) -> Option<ContainerFacts> {
    let container_id = task.container_id()?;
    if !task.container_runs() {
        return None;
    }
    let health = match local {
        Some(local) => local.health,
        // A task reaches `running` only after its first passing healthcheck,
        // and Swarm replaces it when it turns unhealthy.
        None if task.status.state == "starting" => Health::Starting,
        None => Health::None,
    };
    let slot = match task.slot {
        Some(slot) => slot.to_string(),
        None => task.node_id.clone(),
    };
    let image = task.image(service);
    let mut networks: Vec<NetworkAddress> = task
        .networks_attachments
        .iter()
        .map(|attachment| NetworkAddress {
            name: attachment.network.spec.name.clone(),
            ip: attachment
                .addresses
                .first()
                .and_then(|cidr| cidr.split('/').next())
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
            overlay: attachment.network.overlay(),
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Some(ContainerFacts {
        id: ContainerId(container_id.to_owned()),
        // The name Docker gives the task's container.
        name: format!("{}.{slot}.{}", service.spec.name, task.id),
        // Pinned digests make unreadable server names and stats.
        image: image.split('@').next().unwrap_or(image).to_owned(),
        created: task.created_at.clone(),
        // A task never restarts (Swarm starts a new one), so a drain lasts
        // as long as the task.
        started_at: task.created_at.clone(),
        labels: service.spec.labels.iter().collect(),
        running: true,
        paused: local.is_some_and(|l| l.paused),
        health,
        host_network: false,
        networks,
        exposed_tcp_ports: local.map_or_else(|| exposed_tcp_ports.to_vec(), |l| l.exposed_tcp_ports.clone()),
        node: Some(node.map_or(task.node_id.as_str(), Node::name).to_owned()),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("swarm discovery reads the Docker API over unix:// or tcp:// only, not {0:?}")]
    Scheme(String),
    #[error("Docker API {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("Docker API {path}: HTTP {status}: {message}")]
    Status { path: String, status: u16, message: String },
    #[error("Docker API {path}: unexpected answer: {message}")]
    Decode { path: String, message: String },
}

impl ApiError {
    /// The daemon is not (or no longer) a Swarm manager.
    pub fn not_a_manager(&self) -> bool {
        matches!(self, ApiError::Status { status: 503, .. })
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v<version><path>` on the daemon at `host` (the same forms teal's
/// `--docker-host` takes), decoded from JSON.
pub async fn get<T: serde::de::DeserializeOwned>(host: &str, version: &str, path: &str) -> Result<T, ApiError> {
    call(host, version, "GET", path, None).await
}

/// `POST /v<version><path>` with a JSON `body`, the answer decoded from JSON.
pub async fn post<T: serde::de::DeserializeOwned>(
    host: &str,
    version: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<T, ApiError> {
    call(host, version, "POST", path, Some(body)).await
}

/// One call over HTTP/1.0, so the answer is never chunked and ends when
/// the daemon closes the connection.
async fn call<T: serde::de::DeserializeOwned>(
    host: &str,
    version: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<T, ApiError> {
    let io = |source| ApiError::Io {
        path: path.to_owned(),
        source,
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} /v{version}{path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: teal\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut raw = Vec::new();
        if let Some(socket) = host.strip_prefix("unix://") {
            let mut stream = tokio::net::UnixStream::connect(socket).await?;
            stream.write_all(request.as_bytes()).await?;
            stream.read_to_end(&mut raw).await?;
        } else if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            let mut stream = tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?;
            stream.write_all(request.as_bytes()).await?;
            stream.read_to_end(&mut raw).await?;
        } else {
            return Ok(None);
        }
        Ok(Some(raw))
    };
    let raw = tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")))?
        .map_err(io)?
        .ok_or_else(|| ApiError::Scheme(host.to_owned()))?;
    decode(path, &raw)
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, raw: &[u8]) -> Result<T, ApiError> {
    let bad = |message: String| ApiError::Decode {
        path: path.to_owned(),
        message,
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers".into()))?;
    let (head, body) = (String::from_utf8_lossy(&raw[..split]), &raw[split + 4..]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line".into()))?;
    if status != 200 {
        #[derive(Deserialize)]
        struct Message {
            message: String,
        }
        let message = serde_json::from_slice::<Message>(body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
        return Err(ApiError::Status {
            path: path.to_owned(),
            status,
            message,
        });
    }
    serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
}

/// `?filters=` with a JSON map, percent-encoded.
pub fn filters_query(filters: &HashMap<&str, Vec<String>>) -> String {
    let json = serde_json::to_string(filters).unwrap_or_default();
    let mut out = String::from("?filters=");
    for b in json.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a Docker 20.10 manager's /services and /tasks answers.
    const SERVICE: &str = r#"{"ID": "p221nybelc9ir578joyhx7uth",
        "Spec": {"Name": "shop_website", "Labels": {"teal.service": "website", "com.docker.stack.namespace": "shop"},
                 "TaskTemplate": {"ContainerSpec": {"Image": "app:2@sha256:0123abcd"}}}}"#;
    const TASK: &str = r#"{"ID": "xa4t79rgb2hvhdrkzhosbtj5r", "CreatedAt": "2026-11-22T00:57:20.481559383Z",
        "Labels": {}, "ServiceID": "p221nybelc9ir578joyhx7uth", "Slot": 1, "NodeID": "g3eun6okpwi88c9qu93i7e2we",
        "Status": {"State": "running", "ContainerStatus": {"ContainerID": "36eb7a7af1e6fca4c76e331d2203192a4fc603aec501a2350d9b86d224e2aab4", "PID": 2175}},
        "DesiredState": "running",
        "NetworksAttachments": [
            {"Network": {"ID": "jfvr", "Spec": {"Name": "shop_web", "DriverConfiguration": {"Name": "overlay"}, "Scope": "swarm"}},
             "Addresses": ["10.0.1.3/24"]},
            {"Network": {"ID": "ingr", "Spec": {"Name": "ingress", "DriverConfiguration": {}, "Ingress": true}},
             "Addresses": ["10.0.0.7/24"]}]}"#;

    fn parsed() -> (Service, Task) {
        (
            serde_json::from_str(SERVICE).unwrap(),
            serde_json::from_str(TASK).unwrap(),
        )
    }

    #[test]
    fn a_running_task_is_a_container_with_the_service_labels() {
        let (service, task) = parsed();
        let facts = task_facts(&service, &task, None, None, &[8080]).unwrap();
        assert_eq!(
            facts.id.0,
            "36eb7a7af1e6fca4c76e331d2203192a4fc603aec501a2350d9b86d224e2aab4"
        );
        assert_eq!(facts.name, "shop_website.1.xa4t79rgb2hvhdrkzhosbtj5r");
        assert_eq!(facts.image, "app:2");
        assert_eq!(facts.labels.get("teal.service"), Some("website"));
        assert_eq!(facts.health, Health::None);
        assert_eq!(facts.exposed_tcp_ports, vec![8080]);
        assert_eq!(facts.networks.len(), 2);
        assert_eq!(facts.networks[1].name, "shop_web");
        assert_eq!(facts.networks[1].ip, Some("10.0.1.3".parse().unwrap()));
        assert!(facts.networks.iter().all(|n| n.overlay));
        assert!(!task.stopping() && !task.in_flux());
        // Without the node listed, the task's node id stands in for its name.
        assert_eq!(facts.node.as_deref(), Some("g3eun6okpwi88c9qu93i7e2we"));
        // Mid-update an old task keeps its own image.
        let old: Task = serde_json::from_str(&TASK.replacen(
            r#""DesiredState""#,
            r#""Spec": {"ContainerSpec": {"Image": "app:1@sha256:0a1b"}}, "DesiredState""#,
            1,
        ))
        .unwrap();
        assert_eq!(task_facts(&service, &old, None, None, &[]).unwrap().image, "app:1");
    }

    // Trimmed from a Docker 20.10 manager's /nodes answer, a worker whose
    // dockerd was killed.
    const NODE: &str = r#"{"ID": "g3eun6okpwi88c9qu93i7e2we", "Version": {"Index": 61},
        "Spec": {"Role": "worker", "Availability": "active"},
        "Description": {"Hostname": "n2", "Platform": {"Architecture": "x86_64", "OS": "linux"}},
        "Status": {"State": "down", "Message": "heartbeat failure", "Addr": "198.18.0.12"}}"#;

    #[test]
    fn a_task_is_named_after_its_node() {
        let (service, task) = parsed();
        let mut node: Node = serde_json::from_str(NODE).unwrap();
        assert!(!node.ready());
        let facts = task_facts(&service, &task, Some(&node), None, &[8080]).unwrap();
        assert_eq!(facts.node.as_deref(), Some("n2"));
        // Swarm's verdict on its node, then on the task: a replacement runs
        // elsewhere, and nothing can stop or drain this one.
        assert!(!task.abandoned(Some(&node)));
        let mut replaced = task.clone();
        replaced.desired_state = "shutdown".into();
        assert!(replaced.abandoned(Some(&node)) && replaced.abandoned(None));
        node.status.state = "ready".into();
        assert!(node.ready());
        // Back: Swarm stops it there, and teal drains it meanwhile.
        assert!(!replaced.abandoned(Some(&node)) && replaced.stopping());
        node.description.hostname.clear();
        assert_eq!(node.name(), "g3eun6okpwi88c9qu93i7e2we");
    }

    #[test]
    fn task_states() {
        let (service, mut task) = parsed();
        task.status.state = "starting".into();
        assert_eq!(
            task_facts(&service, &task, None, None, &[]).unwrap().health,
            Health::Starting
        );
        assert!(task.in_flux());
        // This node's own view of the healthcheck wins over the task state,
        // which lags behind it.
        let local = LocalContainer {
            health: Health::Healthy,
            paused: false,
            exposed_tcp_ports: vec![80],
        };
        let facts = task_facts(&service, &task, None, Some(&local), &[8080]).unwrap();
        assert_eq!((facts.health, facts.exposed_tcp_ports), (Health::Healthy, vec![80]));

        task.status.state = "running".into();
        task.desired_state = "shutdown".into();
        assert!(task.stopping() && task.in_flux());
        for gone in ["preparing", "complete", "shutdown", "failed"] {
            task.status.state = gone.into();
            assert!(task_facts(&service, &task, None, None, &[]).is_none(), "{gone}");
        }
        task.status.state = "running".into();
        task.status.container_status = None;
        assert!(task_facts(&service, &task, None, None, &[]).is_none());
    }

    #[test]
    fn http_answers() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"ID\":\"a\"}]";
        let services: Vec<Service> = decode("/services", ok).unwrap();
        assert_eq!(services[0].id, "a");
        let refused = b"HTTP/1.0 503 Service Unavailable\r\n\r\n{\"message\":\"This node is not a swarm manager.\"}\n";
        let error = decode::<Vec<Service>>("/services", refused).unwrap_err();
        assert!(error.not_a_manager(), "{error}");
        assert!(error.to_string().contains("not a swarm manager"), "{error}");
        // Managers without a leader (too few of them online) answer 500: no
        // news about the tasks, and the daemon is still a manager.
        let leaderless = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"message\":\"rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.\"}\n";
        let error = decode::<Vec<Service>>("/services", leaderless).unwrap_err();
        assert!(!error.not_a_manager(), "{error}");
        assert!(error.to_string().contains("does not have a leader"), "{error}");
        assert!(decode::<Vec<Service>>("/services", b"garbage").is_err());
    }

    #[test]
    fn filters_are_encoded() {
        let query = filters_query(&HashMap::from([("label", vec!["teal.service".to_owned()])]));
        assert_eq!(query, "?filters=%7B%22label%22%3A%5B%22teal.service%22%5D%7D");
    }
}
