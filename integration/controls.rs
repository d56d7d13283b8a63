//! `teal maintenance` and `teal pause`/`resume` against the real daemon and
//! HAProxy: the maintenance page is served, with Retry-After, across a
//! restart of teal and until it is turned off; a pause holds requests until
//! `teal resume` (or its --max), and none of them fails.

use std::time::{Duration, Instant};

use crate::app_image;
use crate::docker::Docker;
use crate::http;
use crate::rollout_cmd::{run_cli, short, Deploy};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_until};

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_serves_the_page_across_a_teal_restart_until_turned_off() {
    let prefix = unique_prefix();
    let docker = Docker::shared();
    // Outlives the first teal: maintenance must survive the restart.
    let state = tempfile::tempdir().expect("state dir");
    let start = || Teal::builder(&prefix).state_dir(state.path()).start();
    let mut teal = start().await;
    let web = docker.container(&prefix, "web").service("web").run().await;
    teal.wait_served_by(&web.body, CONVERGE).await;

    let (ok, output) = run_cli(
        &teal,
        &["maintenance", "web", "on", "--message", "Back at 5 <b>o'clock</b>"],
    )
    .await;
    assert!(ok && output.contains("web: in maintenance"), "{output}");
    let page = http::get(teal.http, "localhost", "/").await.expect("an answer");
    assert_eq!((page.status, page.header("retry-after")), (503, Some("60")), "{page:?}");
    assert!(
        page.body.contains("Back at 5 &lt;b&gt;o&#x27;clock&lt;/b&gt;"),
        "{}",
        page.body
    );
    let (ok, output) = run_cli(&teal, &["status", "--json"]).await;
    assert!(
        ok && output.contains(r#""message": "Back at 5 <b>o'clock</b>""#),
        "{output}"
    );

    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
    drop(teal);
    teal = start().await;
    wait_until(CONVERGE, "the restarted teal serves the maintenance page", || async {
        http::get(teal.http, "localhost", "/")
            .await
            .is_ok_and(|page| page.status == 503 && page.body.contains("Back at 5"))
    })
    .await;

    let (ok, output) = run_cli(&teal, &["maintenance", "web", "off"]).await;
    assert!(ok && output.contains("web: maintenance off"), "{output}");
    // The restarted HAProxy may not have checked the server UP yet.
    teal.wait_served_by(&web.body, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_holds_every_request_until_resume_or_its_max() {
    let prefix = unique_prefix();
    // The compiled app: it reads a POST's body before it answers. busybox
    // httpd answers 501 with the body unread and resets the connection,
    // which HAProxy then reports as a 502 (nearly always for 64 KiB sent at
    // once; now and then for one held and released).
    let deploy = Deploy::new(&prefix);
    // TEAL_HOLD=0 in the harness: a pause holds even where nothing else would.
    let teal = Teal::builder(&prefix).start().await;
    let web = deploy.run("web", app_image::image(), &[]).await;
    let body = short(&web).to_owned();
    teal.wait_served_by(&body, CONVERGE).await;

    let (ok, output) = run_cli(&teal, &["pause", "web", "--max", "60s"]).await;
    assert!(ok && output.contains("web: paused"), "{output}");
    let paused_at = Instant::now();
    // Four GETs and a POST with a 64 KiB body, which is held with it.
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let addr = teal.http;
            tokio::spawn(async move {
                let answer = if i == 0 {
                    http::post(addr, "localhost", "/", &[b'x'; 65536]).await
                } else {
                    http::get(addr, "localhost", "/").await
                };
                (http::describe(&answer), Instant::now())
            })
        })
        .collect();
    wait_until(CONVERGE, "HAProxy holds the 5 requests", || async {
        teal.metric("teal_requests_holding{service=\"web\"}").await == Some(5.0)
    })
    .await;
    // The command returns once HAProxy has loaded the resume, which may be
    // after the held requests went on: the earliest they may go is when
    // the command starts.
    let resume_at = Instant::now();
    let (ok, output) = run_cli(&teal, &["resume", "web"]).await;
    assert!(ok && output.contains("web: resumed"), "{output}");
    for (i, request) in requests.into_iter().enumerate() {
        let (answer, at) = request.await.expect("request task");
        assert_eq!(answer, body, "held request {i} failed");
        assert!(at >= resume_at, "request {i} was answered before the resume");
    }
    eprintln!(
        "pause: 5 requests held {:?}, all served after resume (the command took {:?})",
        resume_at - paused_at,
        resume_at.elapsed()
    );
    assert_eq!(teal.served().await, body);

    // A pause ends by itself at --max: no sooner (the end is rounded up to
    // a whole second) and not much later.
    let pause_at = Instant::now();
    let (ok, output) = run_cli(&teal, &["pause", "web", "--max", "3s"]).await;
    assert!(ok, "{output}");
    let applied = pause_at.elapsed();
    let answer = http::describe(&http::get(teal.http, "localhost", "/").await);
    assert_eq!(answer, body);
    let ended = pause_at.elapsed();
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(10)).contains(&ended),
        "a 3s pause ended {ended:?} after the command (applied after {applied:?})"
    );
    eprintln!("pause --max 3s: applied after {applied:?}, a request sent then was served {ended:?} after the command");
}
