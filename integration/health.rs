//! Health gating: a container with a Docker HEALTHCHECK is routed only while
//! Docker says it is `healthy`.

use std::time::Duration;

use crate::docker::Docker;
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_gates_routing() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    let teal = Teal::builder(&prefix).start().await;

    // The long start period keeps it `starting` until the first success;
    // after that, two failures make it `unhealthy`.
    let checked = docker
        .container(&prefix, "checked")
        .service("web")
        .args(&[
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "500ms",
            "--health-timeout",
            "2s",
            "--health-retries",
            "2",
            "--health-start-period",
            "60s",
        ])
        .run()
        .await;
    // Started after `checked`: once it is served, teal has seen both starts.
    let plain = docker.container(&prefix, "plain").service("web").run().await;
    teal.wait_served_by(&plain.body, CONVERGE).await;

    assert_eq!(docker.health(&checked).await, "starting");
    let seen = teal.sample(20).await;
    assert!(
        seen.iter().all(|s| *s == plain.body),
        "only the plain container is routed while the other is starting: {seen:?}"
    );
    assert_eq!(docker.health(&checked).await, "starting");

    docker.exec(&checked, &["touch", "/tmp/ok"]).await;
    wait_until(CONVERGE, "docker reports healthy", || async {
        docker.health(&checked).await == "healthy"
    })
    .await;
    teal.wait_served_by(&checked.body, CONVERGE).await;

    docker.exec(&checked, &["rm", "/tmp/ok"]).await;
    wait_until(CONVERGE, "docker reports unhealthy", || async {
        docker.health(&checked).await == "unhealthy"
    })
    .await;
    teal.wait_only(&[&plain.body], CONVERGE).await;
}
