//! A Docker Swarm of several nodes on this machine, for the multi-node tests
//! (`integration/multinode.rs`) and `cargo bench --bench swarm`, which
//! includes this file with `#[path]`. `scripts/swarm-bed.sh` does the work
//! and documents the layout; [`SwarmBed`] calls it and removes the bed when
//! dropped, even when the test panics (a test run killed outright leaves it
//! to the next `up`, which removes beds whose owner is gone).
//!
//! Nodes `n1`..`nN` are network namespaces with a dockerd each, on a bridge
//! in a hub namespace. Nothing connects to them from the host: a [`Hub`]
//! runs futures on a thread inside the hub namespace, where node K's
//! published ports answer at 198.18.0.(10+K).
//!
//! [`SwarmBed::deploy`] puts the layout the tests and the benchmark share on
//! the bed: an overlay `web`, the app service `app` (labelled for teal, one
//! task per node, start-first updates) and teal itself as the global service
//! `lb` on every manager, publishing HAProxy's port and teal's status port on
//! its node's address (see docs/swarm.md).

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use teal::status::StatusReport;
use tokio::process::Command;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::http;

const LOCK_WAIT: Duration = Duration::from_secs(600);
/// Swarm calls a node Down after ~12 s without heartbeats and starts its
/// tasks elsewhere a few seconds later (SWARM-BED.md); a new leader first
/// waits for heartbeats again; on a loaded machine all of it takes longer.
const RESCHEDULE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);
pub const HTTP_PORT: u16 = 8080;
pub const STATUS_PORT: u16 = 9180;
/// The app service's name, its teal service and its network.
pub const APP: &str = "app";
const TEAL: &str = "lb";
const NETWORK: &str = "web";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-bed.sh")
}

/// Why no bed can be made here, if none can: the script needs root
/// (network namespaces, dockerd) and these programs.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("a swarm bed needs root (network namespaces, dockerd)".into());
    }
    ["ip", "nsenter", "unshare", "dockerd", "iptables"]
        .into_iter()
        .find(|program| which::which(program).is_err())
        .map(|program| format!("a swarm bed needs {program}, which is not installed"))
}

pub struct SwarmBed {
    name: String,
    /// One bed at a time on this machine: three dockerds take most of it.
    _lock: File,
}

impl SwarmBed {
    /// `managers` then `workers` nodes, with `images` loaded into each.
    pub async fn up(name: &str, managers: usize, workers: usize, images: &[&str]) -> SwarmBed {
        let lock = File::create(std::env::temp_dir().join("teal-swarm-bed.lock")).expect("lock file");
        let deadline = Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            assert!(
                Instant::now() < deadline,
                "another swarm bed held the lock for {LOCK_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let bed = SwarmBed {
            name: name.to_owned(),
            _lock: lock,
        };
        let mut args = vec![
            "up".to_owned(),
            name.to_owned(),
            "--managers".to_owned(),
            managers.to_string(),
            "--workers".to_owned(),
            workers.to_string(),
        ];
        for image in images {
            args.extend(["--image".to_owned(), image.to_string()]);
        }
        let started = Instant::now();
        run_script(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        eprintln!(
            "swarm bed {name}: {managers} manager(s), {workers} worker(s) up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        bed
    }

    fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("teal-bed-{}", self.name))
    }

    /// The node's daemon, as the host reaches it.
    pub fn host(&self, node: &str) -> String {
        format!("unix://{}", self.dir().join(node).join("docker.sock").display())
    }

    /// Where the hub reaches a port node `nK` publishes.
    pub fn addr(&self, node: &str, port: u16) -> SocketAddr {
        let k: u8 = node.trim_start_matches('n').parse().expect("a node is nK");
        SocketAddr::from((Ipv4Addr::new(198, 18, 0, 10 + k), port))
    }

    /// `docker ARGS` against the node's daemon: trimmed stdout, or stderr.
    pub async fn docker(&self, node: &str, args: &[&str]) -> Result<String, String> {
        let mut docker = Command::new("docker");
        docker.arg("-H").arg(self.host(node)).args(args).kill_on_drop(true);
        let out = docker.output().await.map_err(|e| format!("spawn docker: {e}"))?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
        match out.status.success() {
            true => Ok(text(&out.stdout)),
            false => Err(format!("docker {} on {node}: {}", args.join(" "), text(&out.stderr))),
        }
    }

    /// The node lost: every process of it SIGKILLed (a crash), or its link
    /// down at its switch port.
    pub async fn lose(&self, node: &str, loss: Loss) {
        let command = match loss {
            Loss::Kill => "kill",
            Loss::Cut => "cut",
        };
        run_script(&[command, &self.name, node]).await
    }

    /// The node back: a killed one boots again (its swarm state kept, its
    /// containers gone), a cut one has its link up again.
    pub async fn restore(&self, node: &str, loss: Loss) {
        let command = match loss {
            Loss::Kill => "start",
            Loss::Cut => "mend",
        };
        run_script(&[command, &self.name, node]).await
    }

    /// Loses `victim`, which runs the app's task `lost`, under whatever load
    /// runs: waits until teal on `manager` has it out of rotation (within
    /// `bound`), then until teal routes exactly the swarm's tasks again.
    /// Returns the time until each, from the start of the loss.
    pub async fn lose_task(
        &self,
        hub: &Hub,
        manager: &str,
        (victim, lost): (&str, &str),
        loss: Loss,
        bound: Duration,
    ) -> (Duration, Duration) {
        let count = self.tasks(manager).await.map(|t| t.len()).unwrap_or_default();
        let started = Instant::now();
        self.lose(victim, loss).await;
        self.out_of_rotation(hub, manager, lost, bound).await;
        let out = started.elapsed();
        self.converged(hub, manager, count, victim).await;
        (out, started.elapsed())
    }

    /// A thread in the hub's network namespace, to be a client of the nodes.
    pub fn hub(&self) -> Hub {
        Hub::new(Path::new(&self.hub_netns()))
    }

    /// The hub's network namespace, for [`enter_netns`].
    pub fn hub_netns(&self) -> String {
        format!("/run/netns/tb-{}-hub", self.name)
    }

    /// The last lines of a node's dockerd log.
    fn log(&self, node: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir().join(node).join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The app service (`replicas` tasks of `image`, which answers its
    /// hostname on 8080) and teal on every manager; returns once each
    /// task runs. `teal_image` is teal supervising HAProxy (teal:local).
    pub async fn deploy(&self, image: &str, replicas: usize, teal_image: &str) {
        let replicas = replicas.to_string();
        let publish_http = format!("mode=host,target=80,published={HTTP_PORT}");
        let publish_status = format!("mode=host,target=9180,published={STATUS_PORT}");
        #[rustfmt::skip]
        let steps: [&[&str]; 3] = [
            &["network", "create", "--driver", "overlay", NETWORK],
            &[
                "service", "create", "--detach", "--no-resolve-image", "--name", APP,
                "--replicas", &replicas, "--network", NETWORK,
                "--label", "teal.service=app", "--label", "teal.port=8080",
                // Swarm calls a task running once this passes: start-first
                // updates wait for it, teal routes a task only from then on.
                "--health-cmd", "wget -q -O /dev/null http://127.0.0.1:8080/",
                "--health-interval", "1s", "--health-timeout", "2s", "--health-retries", "3",
                "--update-order", "start-first", "--update-parallelism", "1",
                "--update-delay", "0s", "--update-monitor", "1s",
                // busybox httpd ignores SIGTERM: Swarm's SIGKILL comes after this.
                "--stop-grace-period", "2s",
                image,
            ],
            &[
                "service", "create", "--detach", "--no-resolve-image", "--name", TEAL,
                "--mode", "global", "--constraint", "node.role==manager",
                "--network", NETWORK,
                "--publish", &publish_http, "--publish", &publish_status,
                // Each manager's own daemon: /var/run/docker.sock inside its node.
                "--mount", "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock",
                "--env", "TEAL_LOG_FORMAT=text",
                teal_image,
            ],
        ];
        for args in steps {
            self.docker("n1", args).await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// teal's `/status` on a manager, read from the hub.
    pub async fn status(&self, hub: &Hub, manager: &str) -> Option<StatusReport> {
        let addr = self.addr(manager, STATUS_PORT);
        let response = hub.spawn(http::get(addr, "teal", "/status")).await.ok()?.ok()?;
        serde_json::from_str(&response.body).ok()
    }

    /// The app's servers as teal on `manager` has them: body (container
    /// hostname) -> (node, HAProxy's state).
    pub async fn routed(&self, hub: &Hub, manager: &str) -> Option<BTreeMap<String, (String, String)>> {
        let report = self.status(hub, manager).await?;
        let app = report.services.into_iter().find(|s| s.name == APP);
        Some(
            app.map(|s| s.servers)
                .unwrap_or_default()
                .into_iter()
                .map(|server| {
                    let body = server.container_id.chars().take(12).collect();
                    let state = server.haproxy.map(|h| h.to_string()).unwrap_or_default();
                    (body, (server.node.unwrap_or_default(), state))
                })
                .collect(),
        )
    }

    /// Waits until Swarm runs `count` tasks of the app, none on `not_on`,
    /// and teal on `manager` routes exactly those: all UP, each on its
    /// node, nothing else (no task Swarm replaced).
    pub async fn converged(&self, hub: &Hub, manager: &str, count: usize, not_on: &str) -> Vec<Task> {
        let deadline = Instant::now() + RESCHEDULE;
        loop {
            let tasks = self.tasks(manager).await.unwrap_or_default();
            let running = tasks.len() == count && tasks.iter().all(|t| t.state == "running" && t.node != not_on);
            let expected: BTreeMap<String, (String, String)> = tasks
                .iter()
                .map(|t| (t.body.clone(), (t.node.clone(), "UP".to_owned())))
                .collect();
            let routed = self.routed(hub, manager).await;
            if running && routed.as_ref() == Some(&expected) {
                return tasks;
            }
            assert!(
                Instant::now() < deadline,
                "teal on {manager} never routed exactly the swarm's {count} running tasks \
                 (none on {not_on:?}) within {RESCHEDULE:?};\nswarm: {tasks:?}\nteal: {routed:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until teal on `manager` no longer sends requests to the task
    /// `body` (HAProxy took it out, or teal let it go); panics after `timeout`.
    pub async fn out_of_rotation(&self, hub: &Hub, manager: &str, body: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let routed = self.routed(hub, manager).await;
            if routed
                .as_ref()
                .is_some_and(|r| r.get(body).is_none_or(|(_, state)| state != "UP"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {body} still in rotation on {manager} after {timeout:?}: {routed:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `docker service update --detach ARGS app`, then waits until Swarm
    /// says the update completed.
    pub async fn update(&self, args: &[&str]) {
        let mut update = vec!["service", "update", "--detach"];
        update.extend_from_slice(args);
        update.push(APP);
        self.docker("n1", &update).await.unwrap_or_else(|e| panic!("{e}"));
        let format = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}";
        let deadline = Instant::now() + RESCHEDULE;
        while self
            .docker("n1", &["service", "inspect", "--format", format, APP])
            .await
            .as_deref()
            != Ok("completed")
        {
            assert!(
                Instant::now() < deadline,
                "the rolling update {args:?} did not complete"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until Swarm calls `node` ready (back after a kill or a cut).
    pub async fn wait_ready(&self, node: &str) {
        let deadline = Instant::now() + RESCHEDULE;
        let format = "{{.Status.State}}";
        while self
            .docker("n1", &["node", "inspect", "--format", format, node])
            .await
            .as_deref()
            != Ok("ready")
        {
            assert!(Instant::now() < deadline, "{node} is not ready again");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The manager that leads the swarm.
    pub async fn leader(&self) -> String {
        let format = "{{.Hostname}} {{.ManagerStatus}}";
        let managers = self
            .docker("n1", &["node", "ls", "--filter", "role=manager", "--format", format])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let leader = managers.lines().find_map(|l| l.strip_suffix(" Leader"));
        leader.unwrap_or_else(|| panic!("no leader: {managers}")).to_owned()
    }

    /// A worker that runs exactly one of the app's tasks, and the task's body.
    ///
    /// Swarm places a start-first update's new task while the old one still
    /// runs, so tasks drift onto fewer nodes (two on one, none on another).
    /// A worker with two of three tasks lost at once leaves one server: a
    /// request HAProxy retries can then meet both dead ones in turn (a
    /// redispatch only avoids the server it just tried) and get a 503 after
    /// its retries, as 1 of 11,563 did in one run. `None`: spread them
    /// again (`update(&["--force"])`).
    pub async fn worker_with_one_task(&self) -> Option<(String, String)> {
        let tasks = self.tasks("n1").await.ok()?;
        let workers = self.docker(
            "n1",
            &["node", "ls", "--filter", "role=worker", "--format", "{{.Hostname}}"],
        );
        let workers = workers.await.ok()?;
        workers.lines().find_map(
            |worker| match tasks.iter().filter(|t| t.node == worker).collect::<Vec<_>>()[..] {
                [task] => Some((worker.to_owned(), task.body.clone())),
                _ => None,
            },
        )
    }

    /// The app's tasks Swarm wants running, with their node and state.
    pub async fn tasks(&self, manager: &str) -> Result<Vec<Task>, String> {
        let nodes = self
            .docker(manager, &["node", "ls", "--format", "{{.ID}} {{.Hostname}}"])
            .await?;
        let nodes: Vec<(&str, &str)> = nodes.lines().filter_map(|l| l.split_once(' ')).collect();
        let ids = self
            .docker(
                manager,
                &["service", "ps", "-q", "--filter", "desired-state=running", APP],
            )
            .await?;
        let mut tasks = Vec::new();
        for id in ids.lines() {
            let format = "{{.NodeID}} {{.Status.State}} {{with .Status.ContainerStatus}}{{.ContainerID}}{{end}}";
            let line = self.docker(manager, &["inspect", "--format", format, id]).await?;
            let mut words = line.split_whitespace();
            let (node_id, state) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
            let node = nodes.iter().find(|(id, _)| *id == node_id).map_or(node_id, |(_, n)| n);
            tasks.push(Task {
                node: node.to_owned(),
                state: state.to_owned(),
                body: words.next().unwrap_or_default().chars().take(12).collect(),
            });
        }
        tasks.sort_by(|a, b| (&a.node, &a.body).cmp(&(&b.node, &b.body)));
        Ok(tasks)
    }
}

impl Drop for SwarmBed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- n1's dockerd log (tail) -----\n{}", self.log("n1", 30));
        }
        let out = StdCommand::new(script()).args(["down", &self.name]).output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cleanup: scripts/swarm-bed.sh down {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("cleanup: scripts/swarm-bed.sh down {}: {e}", self.name),
        }
    }
}

/// How a node is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Every process SIGKILLed: dockerd, containerd, shims, containers.
    Kill,
    /// Its link down.
    Cut,
}

/// `scripts/swarm-bed.sh ARGS`, as this process's bed; panics with its
/// stderr when it fails.
async fn run_script(args: &[&str]) {
    let out = Command::new(script())
        .args(args)
        .env("TEAL_BED_OWNER", std::process::id().to_string())
        .output()
        .await
        .expect("run scripts/swarm-bed.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/swarm-bed.sh {}: {stderr}",
        args.join(" ")
    );
}

/// A task of the app service: where it runs, and what it answers (its
/// container's hostname, the first 12 digits of the container id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub node: String,
    pub state: String,
    pub body: String,
}

/// A runtime on a thread of its own inside a network namespace: every
/// socket its tasks open is the namespace's.
pub struct Hub {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    fn new(netns: &Path) -> Hub {
        let netns = netns.to_owned();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            enter_netns(&netns);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("hub runtime");
            handle_tx.send(runtime.handle().clone()).expect("hub handle");
            runtime.block_on(async {
                let _ = stopped.await;
            });
        });
        Hub {
            handle: handle_rx.recv().expect("the hub thread started"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` in the namespace.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the calling thread (only it) into the network namespace at `path`.
pub fn enter_netns(path: &Path) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
}
