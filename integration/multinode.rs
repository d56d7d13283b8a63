//! A swarm of three nodes (network namespaces with a dockerd each, see
//! `swarm_bed`): teal as a global service on the managers, in a container
//! attached to the overlay, and an app service with a task on every node.
//! Load comes from the hub namespace to a manager's published port; only
//! containers on the overlay reach the tasks' addresses.
//!
//! - one manager and two workers: a start-first rolling update under load
//!   loses nothing; a worker whose processes are all SIGKILLed (a crash),
//!   then one whose link is cut: its task leaves rotation within
//!   [`OUT_OF_ROTATION`] (HAProxy's checks, long before Swarm calls the node
//!   Down), only requests in flight on it may fail, and once Swarm has
//!   replaced the task it leaves teal's view and HAProxy; the node back, a
//!   new task there is routed, and the task Swarm replaced never is.
//! - three managers: the leader, which every manager's API answers through,
//!   is killed; the teal on another manager keeps serving and follows the
//!   swarm again once the managers have elected a new leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use crate::examples::{ensure_example_images, report};
use crate::http::{Load, LoadStats};
use crate::swarm_bed::{self, Hub, Loss, SwarmBed, Task, HTTP_PORT};
use crate::util::{skip, unique_prefix, wait_for, wait_until, IMAGE};

const TEAL_IMAGE: &str = "teal:local";
const CLIENTS: usize = 8;
const CONVERGE: Duration = Duration::from_secs(60);
/// HAProxy checks every 500 ms, with a 500 ms connect timeout, and takes a
/// server out after three failures 100 ms apart: 2.2 s at worst, measured
/// 1.9-2.6 s from the start of the kill or cut.
const OUT_OF_ROTATION: Duration = Duration::from_secs(5);

/// A bed of `managers` and `workers` with the app and teal deployed, and a
/// client in its hub.
async fn deployed(managers: usize, workers: usize) -> (SwarmBed, Hub) {
    let bed = SwarmBed::up(&unique_prefix(), managers, workers, &[IMAGE, TEAL_IMAGE]).await;
    bed.deploy(IMAGE, 3, TEAL_IMAGE).await;
    let hub = bed.hub();
    (bed, hub)
}

/// A node was lost under this load: at most the requests in flight on it
/// may have failed, one per client at the most.
fn only_in_flight_failed(what: &str, stats: &LoadStats) {
    report(what, stats);
    assert!(
        stats.failures <= CLIENTS as u64,
        "{what}: only requests in flight on the lost node may fail: {:?}",
        stats.errors
    );
}

/// `docker service update ARGS` under load until Swarm says it completed:
/// no request may fail, every new task is served. Returns the new tasks.
async fn rolling_update(bed: &SwarmBed, hub: &Hub, args: &[&str]) -> Vec<Task> {
    let before = bed.tasks("n1").await.expect("tasks");
    let load = Load::start_in(hub.handle(), bed.addr("n1", HTTP_PORT), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    bed.update(args).await;
    let after = bed.converged(hub, "n1", 3, "").await;
    for task in &after {
        assert!(
            !before.contains(task),
            "every task was replaced: {before:?} -> {after:?}"
        );
        wait_for(CONVERGE, "each new task is served", || async {
            load.first_seen(&task.body)
        })
        .await;
    }
    let stats = load.stop().await;
    report(&format!("rolling update {args:?}"), &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    after
}

/// Kills or cuts a worker with one task under load: the task leaves
/// rotation within the bound, and once Swarm has replaced it teal routes
/// the replacement and nothing of the lost task. Returns the worker and
/// the lost task's body.
async fn lose_a_worker(bed: &SwarmBed, hub: &Hub, loss: Loss) -> (String, String) {
    let mut victim = bed.worker_with_one_task().await;
    for _ in 0..3 {
        if victim.is_some() {
            break;
        }
        rolling_update(bed, hub, &["--force"]).await;
        victim = bed.worker_with_one_task().await;
    }
    let (victim, lost) = victim.expect("Swarm never put exactly one task on a worker");
    let load = Load::start_in(hub.handle(), bed.addr("n1", HTTP_PORT), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let (out, whole) = bed.lose_task(hub, "n1", (&victim, &lost), loss, OUT_OF_ROTATION).await;
    // Load duration, not synchronisation: requests after the swarm is whole again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = load.stop().await;
    eprintln!(
        "{loss:?} {victim}: its task out of rotation after {:.1} s, teal's view whole after {:.1} s",
        out.as_secs_f64(),
        whole.as_secs_f64()
    );
    only_in_flight_failed(&format!("{loss:?} {victim}"), &stats);
    (victim, lost)
}

/// One test for both swarms, one after the other: they cannot share the
/// machine (one bed at a time), and a second test would hold one of the
/// test run's threads idle while it waited for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_node_swarms() {
    if let Some(reason) = swarm_bed::unavailable() {
        return skip(&format!("multi-node test: {reason}"));
    }
    ensure_example_images();
    rolling_update_and_worker_loss().await;
    three_managers_survive_the_leader().await;
}

async fn rolling_update_and_worker_loss() {
    let (bed, hub) = deployed(1, 2).await;
    let first = bed.converged(&hub, "n1", 3, "").await;
    let nodes: BTreeSet<&str> = first.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["n1", "n2", "n3"]),
        "a task on each node: {first:?}"
    );
    // `teal status` names each task's node.
    let lb = bed
        .docker(
            "n1",
            &["ps", "-q", "--filter", "label=com.docker.swarm.service.name=lb"],
        )
        .await
        .expect("teal's container");
    let table = bed
        .docker("n1", &["exec", &lb, "teal", "status"])
        .await
        .expect("teal status");
    assert!(
        table.contains("NODE") && table.contains("swarm: following on n1"),
        "{table}"
    );
    for task in &first {
        assert!(
            table
                .lines()
                .any(|l| l.contains(&format!(" {} ", task.node)) && l.contains("UP")),
            "{table}"
        );
    }

    rolling_update(&bed, &hub, &["--env-add", "VERSION=2"]).await;

    let (killed, _) = lose_a_worker(&bed, &hub, Loss::Kill).await;
    // Back: Swarm does not move tasks by itself; a forced update spreads them.
    bed.restore(&killed, Loss::Kill).await;
    bed.wait_ready(&killed).await;
    let spread = rolling_update(&bed, &hub, &["--force"]).await;
    assert!(
        spread.iter().any(|t| t.node == killed),
        "a new task on the node that came back: {spread:?}"
    );

    let (cut, lost) = lose_a_worker(&bed, &hub, Loss::Cut).await;
    // Mended: its worker stops the task Swarm replaced (teal drains it
    // meanwhile), and it is never routed again.
    let load = Load::start_in(hub.handle(), bed.addr("n1", HTTP_PORT), CLIENTS);
    bed.restore(&cut, Loss::Cut).await;
    wait_until(CONVERGE, "the mended node stopped the task Swarm replaced", || async {
        bed.docker(
            &cut,
            &["ps", "-q", "--filter", "label=com.docker.swarm.service.name=app"],
        )
        .await
        .is_ok_and(|ids| ids.is_empty())
    })
    .await;
    bed.converged(&hub, "n1", 3, &cut).await;
    let stats = load.stop().await;
    report(&format!("{cut} mended"), &stats);
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert!(
        !stats.seen.contains_key(&lost),
        "the replaced task {lost} was routed again"
    );
}

async fn three_managers_survive_the_leader() {
    let (bed, hub) = deployed(3, 0).await;
    for manager in ["n1", "n2", "n3"] {
        bed.converged(&hub, manager, 3, "").await;
    }
    let leader = bed.leader().await;
    let other = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap();

    let load = Load::start_in(hub.handle(), bed.addr(other, HTTP_PORT), CLIENTS);
    wait_until(CONVERGE, "load is flowing", || async { load.requests() >= 100 }).await;
    let (started, killed_at) = (Instant::now(), SystemTime::now());
    bed.lose(&leader, Loss::Kill).await;
    let elected = wait_for(CONVERGE, "the managers elect a new leader", || async {
        bed.docker(other, &["node", "ls", "-q"])
            .await
            .ok()
            .map(|_| started.elapsed())
    })
    .await;
    let follows = wait_for(CONVERGE, "teal lists the swarm again", || async {
        let swarm = bed.status(&hub, other).await?.docker.swarm?;
        let listed = humantime::parse_rfc3339(swarm.listed_at.as_deref()?).ok()?;
        (swarm.following && listed > killed_at).then(|| started.elapsed())
    })
    .await;
    // A change made through the new leader reaches teal.
    bed.docker(other, &["service", "update", "--detach", "--replicas", "4", "app"])
        .await
        .expect("scale through the new leader");
    bed.converged(&hub, other, 4, &leader).await;
    let whole = started.elapsed();
    let stats = load.stop().await;
    eprintln!(
        "leader {leader} killed: a new leader after {:.1} s, teal on {other} listing again after {:.1} s, \
         the scaled service routed without {leader}'s task after {:.1} s",
        elected.as_secs_f64(),
        follows.as_secs_f64(),
        whole.as_secs_f64()
    );
    only_in_flight_failed(&format!("leader {leader} killed, load through {other}"), &stats);
}
