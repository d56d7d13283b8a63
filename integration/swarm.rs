//! Swarm mode: `examples/swarm` deployed as it is on a single-node swarm,
//! teal's sidecar (a plain container on a manager, attached to the stack's
//! overlay) routing to each task, and Swarm's own rolling update
//! (`order: start-first`) under load losing no request. Load goes from the
//! host to the sidecar's 127.0.0.1 port only; only containers reach the
//! overlay addresses.
//!
//! The machine's swarm is left as the test found it: an existing manager is
//! used as it is; otherwise the test initialises a swarm on 127.0.0.1 and
//! leaves it at the end. A lock file keeps two test runs on one machine from
//! doing that at the same time.

use std::collections::BTreeSet;
use std::fs::File;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use crate::compose::{Compose, Version};
use crate::examples::{body_of, ensure_example_images, report, served, visits};
use crate::http::Load;
use crate::rollout_cmd::Deploy;
use crate::util::{free_port, poll_for, repo_root, run, skip, unique_prefix, wait_for, wait_until};

const CONVERGE: Duration = Duration::from_secs(60);
const LOCK_WAIT: Duration = Duration::from_secs(180);
const CLIENTS: usize = 8;
const AFTER_UPDATE: Duration = Duration::from_secs(2);

/// This node as a swarm manager for the length of a test.
struct Swarm {
    _lock: File,
    initialised: bool,
    /// Networks that existed before `swarm init`, so leaving removes only
    /// what the init made.
    networks_before: BTreeSet<String>,
}

impl Swarm {
    /// `None` (the test is skipped, or fails under CI) when this node is a worker, in a swarm
    /// of several nodes, or in a state the test should not touch.
    async fn join() -> Option<Swarm> {
        let lock = File::create(std::env::temp_dir().join("teal-integration-swarm.lock")).expect("lock file");
        wait_until(LOCK_WAIT, "no other test run uses the swarm", || async {
            lock.try_lock().is_ok()
        })
        .await;
        let format = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}";
        let state = run("docker", &["info", "--format", format], &[]).await;
        let networks_before = networks().await;
        // One node: every task runs here, where the images are.
        let initialised = match state.as_str() {
            "active true 1" => false,
            "inactive false 0" => {
                run(
                    "docker",
                    &[
                        "swarm",
                        "init",
                        "--advertise-addr",
                        "127.0.0.1",
                        "--listen-addr",
                        "127.0.0.1:2377",
                    ],
                    &[],
                )
                .await;
                true
            }
            other => {
                skip(&format!(
                    "swarm test: this node's swarm is {other:?} (not a single-node manager, not free)"
                ));
                return None;
            }
        };
        Some(Swarm {
            _lock: lock,
            initialised,
            networks_before,
        })
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if !self.initialised {
            return;
        }
        let _ = StdCommand::new("docker").args(["swarm", "leave", "--force"]).output();
        // `swarm init` made docker_gwbridge (ingress goes with the swarm).
        let after = StdCommand::new("docker")
            .args(["network", "ls", "--format", "{{.Name}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for name in after.lines() {
            if name == "docker_gwbridge" && !self.networks_before.contains(name) {
                let _ = StdCommand::new("docker").args(["network", "rm", name]).output();
            }
        }
    }
}

async fn networks() -> BTreeSet<String> {
    let out = run("docker", &["network", "ls", "--format", "{{.Name}}"], &[]).await;
    out.lines().map(str::to_owned).collect()
}

/// `examples/swarm/stack.yml` deployed as `name`; removed on drop, waiting
/// until its network is gone.
struct Stack {
    name: String,
}

impl Stack {
    async fn deploy(name: &str, version: &str) -> Stack {
        let stack = Stack { name: name.to_owned() };
        stack.update(version).await;
        stack
    }

    /// `docker stack deploy` again with another APP_VERSION: a rolling update.
    async fn update(&self, version: &str) {
        let file = repo_root().join("examples/swarm/stack.yml");
        #[rustfmt::skip]
        run("docker", &[
            "stack", "deploy", "--resolve-image", "never", "-c", &file.to_string_lossy(), &self.name,
        ], &[("APP_VERSION", version.to_owned())]).await;
    }

    fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.name)
    }

    /// Bodies (container hostnames) of the service's running tasks.
    async fn running(&self, service: &str) -> Vec<String> {
        self.tasks_in(service, "running").await
    }

    /// Bodies of the service's tasks in this state that Swarm wants running.
    async fn tasks_in(&self, service: &str, state: &str) -> Vec<String> {
        let service = self.service(service);
        #[rustfmt::skip]
        let tasks = run("docker", &[
            "service", "ps", "-q", "--filter", "desired-state=running", &service,
        ], &[]).await;
        let mut bodies = Vec::new();
        for task in tasks.lines() {
            // A task that has no container yet has no ContainerStatus at all.
            let status = run("docker", &["inspect", "-f", "{{json .Status}}", task], &[]).await;
            let status: serde_json::Value = serde_json::from_str(&status).expect("task status JSON");
            let id = status["ContainerStatus"]["ContainerID"].as_str().unwrap_or_default();
            if status["State"] == state && !id.is_empty() {
                bodies.push(body_of(id));
            }
        }
        bodies.sort();
        bodies
    }

    async fn update_state(&self, service: &str) -> String {
        let format = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}";
        run(
            "docker",
            &["service", "inspect", "-f", format, &self.service(service)],
            &[],
        )
        .await
    }
}

impl Drop for Stack {
    /// `docker stack rm` returns at once; the tasks' containers go after it.
    /// Leaving the swarm before they are gone would leave them behind.
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            StdCommand::new("docker")
                .args(args)
                .output()
                .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).trim().to_owned()))
                .unwrap_or((false, String::new()))
        };
        docker(&["stack", "rm", &self.name]);
        let network = format!("{}_web", self.name);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (network_left, _) = docker(&["network", "inspect", &network]);
            let (_, containers) = docker(&["ps", "-aq", "--filter", &label]);
            if !network_left && containers.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "cleanup: stack {} not gone 30s after docker stack rm; removing its containers",
                    self.name
                );
                for id in containers.lines() {
                    docker(&["rm", "-f", "-v", id]);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `examples/swarm` running: the stack, its teal sidecar on a loopback
/// port, and the two website tasks both served through it.
struct Served {
    stack: Stack,
    sidecar: Compose,
    port: u16,
    /// Bodies of the website tasks.
    tasks: Vec<String>,
}

impl Served {
    async fn deploy(name: &str) -> Served {
        let port = free_port();
        let stack = Stack::deploy(name, "1").await;
        let sidecar = Compose::new(
            Version::V2,
            &format!("{name}-lb"),
            "examples/swarm/teal.yml",
            vec![("TEAL_STACK", name.to_owned()), ("TEAL_HTTP_PORT", port.to_string())],
        );
        sidecar.run(&["up", "-d"]).await;
        let tasks = wait_for(CONVERGE, "two website tasks run", || async {
            let bodies = stack.running("website").await;
            (bodies.len() == 2).then_some(bodies)
        })
        .await;
        let both_served = poll_for(CONVERGE, || async {
            let mut seen = BTreeSet::new();
            for _ in 0..10 {
                seen.insert(served(port, "/").await);
            }
            (seen == tasks.iter().cloned().collect()).then_some(())
        })
        .await;
        if both_served.is_none() {
            panic!(
                "the two tasks {tasks:?} were not both served; teal:\n{}",
                sidecar.logs("teal").await
            );
        }
        Served {
            stack,
            sidecar,
            port,
            tasks,
        }
    }

    /// `teal rollout ARGS` run in the sidecar, as a user would
    /// (`docker exec`): whether it succeeded, and what it printed.
    async fn rollout(&self, args: &[&str]) -> (bool, String) {
        let container = self.sidecar.container_name("teal", 1);
        let mut command = vec!["exec", container.as_str(), "teal", "rollout"];
        command.extend_from_slice(args);
        let out = tokio::process::Command::new("docker")
            .args(&command)
            .kill_on_drop(true)
            .output()
            .await
            .expect("docker exec");
        let printed = format!(
            "$ teal rollout {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{printed}");
        (out.status.success(), printed)
    }

    async fn image(&self) -> String {
        let format = "{{.Spec.TaskTemplate.ContainerSpec.Image}}";
        let service = self.stack.service("website");
        run("docker", &["service", "inspect", "-f", format, &service], &[]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swarm_example_rolling_update_loses_no_request() {
    if !Version::V2.usable() {
        return;
    }
    ensure_example_images();
    let Some(_swarm) = Swarm::join().await else {
        return;
    };
    let name = format!("{}s", unique_prefix());
    let Served {
        stack,
        sidecar,
        port,
        tasks: v1,
    } = Served::deploy(&name).await;
    let first = visits(port).await;
    assert_eq!(visits(port).await, first + 1, "tasks share the stack's Redis");

    let load = Load::start(([127, 0, 0, 1], port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let update_started = Instant::now();
    stack.update("2").await;
    wait_until(Duration::from_secs(90), "swarm's rolling update completes", || async {
        stack.update_state("website").await == "completed"
    })
    .await;
    let v2 = stack.running("website").await;
    let update_took = update_started.elapsed();
    assert_eq!(v2.len(), 2, "two tasks after the update: {v2:?}");
    assert!(
        v2.iter().all(|b| !v1.contains(b)),
        "every task was replaced: {v1:?} -> {v2:?}"
    );
    for body in &v2 {
        wait_for(CONVERGE, "each new task is served", || async { load.first_seen(body) }).await;
    }
    // Load duration, not synchronisation: keep the clients going after the update.
    tokio::time::sleep(AFTER_UPDATE).await;
    let stats = load.stop().await;
    eprintln!("swarm rolling update (start-first) took {} ms", update_took.as_millis());
    report("swarm rolling update", &stats);
    if stats.failures > 0 {
        eprintln!("teal:\n{}", sidecar.logs("teal").await);
    }
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    for body in &v1 {
        assert!(
            stats.seen.contains_key(body),
            "old task {body} served during the update"
        );
    }
    wait_until(CONVERGE, "only the new tasks answer", || async {
        for _ in 0..10 {
            if !v2.contains(&served(port, "/").await) {
                return false;
            }
        }
        true
    })
    .await;

    // Health gating: an update whose tasks never pass their healthcheck.
    // Swarm keeps such a task `starting` (and, start-first, the old ones
    // running); teal must never route it.
    let load = Load::start(([127, 0, 0, 1], port).into(), CLIENTS);
    let website = stack.service("website");
    #[rustfmt::skip]
    run("docker", &["service", "update", "--detach", "--health-cmd", "false", &website], &[]).await;
    let starting = wait_for(CONVERGE, "a task of the broken update starts", || async {
        stack.tasks_in("website", "starting").await.into_iter().next()
    })
    .await;
    let requests = load.requests();
    wait_until(CONVERGE, "300 more requests while the task is starting", || async {
        load.requests() >= requests + 300
    })
    .await;
    assert_eq!(stack.tasks_in("website", "starting").await, vec![starting.clone()]);
    let stats = load.stop().await;
    report("swarm update that never gets healthy", &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert!(
        !stats.seen.contains_key(&starting),
        "the task that never got healthy ({starting}) was routed"
    );
}

/// `teal rollout` of a Swarm service: a start-first update Swarm carries
/// out and teal follows, under load, losing no request; then a new version
/// whose tasks never get healthy, rolled back by teal past its --timeout
/// (exit non-zero), still losing none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn teal_rollout_updates_a_swarm_service_and_rolls_a_broken_one_back() {
    if !Version::V2.usable() {
        return;
    }
    ensure_example_images();
    // Declared first, dropped last: its image outlives the stack's tasks.
    let prefix = unique_prefix();
    let mut images = Deploy::new(&prefix);
    let broken = images.build("broken", &[r#"CMD ["sleep", "3600"]"#]).await;
    let Some(_swarm) = Swarm::join().await else {
        return;
    };
    let name = format!("{prefix}r");
    let deployed = Served::deploy(&name).await;
    let image = deployed.image().await;

    let load = Load::start(([127, 0, 0, 1], deployed.port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    // Swarm starts the tasks: no weights of new against old to set.
    let (ok, output) = deployed.rollout(&["website", "--canary", "10,100"]).await;
    assert!(
        !ok && output.contains("without --canary for Swarm's start-first update"),
        "{output}"
    );
    let (ok, output) = deployed.rollout(&["website"]).await;
    assert!(ok, "the rollout failed:\n{output}");
    assert!(
        output.contains("rollout website: done") && output.contains("(forced update)"),
        "{output}"
    );
    let now = deployed.stack.running("website").await;
    assert_eq!(now.len(), 2, "two tasks after the rollout: {now:?}");
    assert!(
        now.iter().all(|b| !deployed.tasks.contains(b)),
        "every task was replaced: {now:?}"
    );
    for body in &now {
        wait_for(CONVERGE, "each new task is served", || async { load.first_seen(body) }).await;
    }
    let stats = load.stop().await;
    report("teal rollout of a swarm service", &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);

    let load = Load::start(([127, 0, 0, 1], deployed.port).into(), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let (ok, output) = deployed
        .rollout(&["website", "--image", &broken, "--timeout", "6s"])
        .await;
    assert!(!ok, "a rollout whose tasks never get healthy succeeded:\n{output}");
    assert!(
        output.contains("no new task came UP in HAProxy") && output.contains("was rolled back"),
        "{output}"
    );
    assert_eq!(deployed.image().await, image, "the service is back on its image");
    let stats = load.stop().await;
    report("teal rollout of a swarm service to a broken image, rolled back", &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    let after = wait_for(CONVERGE, "two tasks of the previous spec run", || async {
        let bodies = deployed.stack.running("website").await;
        (bodies.len() == 2).then_some(bodies)
    })
    .await;
    let expected: BTreeSet<String> = after.into_iter().collect();
    wait_until(CONVERGE, "both tasks of the previous spec are served", || async {
        let mut seen = BTreeSet::new();
        for _ in 0..10 {
            seen.insert(served(deployed.port, "/").await);
        }
        seen == expected
    })
    .await;
}
