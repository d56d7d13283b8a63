//! Discovery: a labelled container is served while it runs, replicas of one
//! service share the traffic, and a stopped container leaves rotation.

use std::time::Duration;

use crate::docker::Docker;
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_container_is_served_until_stopped() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let mut teal = Teal::builder(&prefix).start().await;

    let web = docker.container(&prefix, "web").service("web").run().await;
    teal.wait_served_by(&web.body, CONVERGE).await;
    assert_eq!(teal.sample(10).await, vec![web.body.clone(); 10]);

    docker.stop(&web).await;
    // 503 (empty backend) or 404 (no such service any more) are both fine.
    teal.wait_unserved(CONVERGE).await;
    eprintln!("after the stop: {}", teal.served().await);

    let stopped = teal.stop();
    assert!(stopped.status.success(), "teal exited with {}", stopped.status);
    assert!(
        stopped.orphans.is_empty(),
        "HAProxy outlived teal: {:?}",
        stopped.orphans
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_traffic_and_a_stopped_one_leaves() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;

    let a = docker.container(&prefix, "a").service("web").run().await;
    let b = docker.container(&prefix, "b").service("web").run().await;
    wait_until(CONVERGE, "both replicas get traffic", || async {
        let seen = teal.sample(10).await;
        seen.contains(&a.body) && seen.contains(&b.body)
    })
    .await;

    let seen = teal.sample(40).await;
    let to_a = seen.iter().filter(|s| **s == a.body).count();
    let to_b = seen.iter().filter(|s| **s == b.body).count();
    assert_eq!(to_a + to_b, 40, "only a and b answer: {seen:?}");
    assert!(to_a >= 10 && to_b >= 10, "balanced: a={to_a} b={to_b}");

    docker.stop(&a).await;
    teal.wait_only(&[&b.body], CONVERGE).await;
}
