//! `teal rollout --canary` under load (a new connection per request): a
//! good version promoted step by step with no request lost, a version that
//! answers 500 to one request in five rolled back by its error rate, and a
//! slow one rolled back by `--max-latency-ratio`. Steps are short (1-2 s)
//! and `--min-requests` low, so each test takes seconds. And the weights
//! themselves: a choice in the state dir that the daemon applies through
//! the runtime API, kept across a restart of teal.

use std::time::{Duration, Instant};

use crate::app_image;
use crate::http::Load;
use crate::rollout_cmd::{more_requests, run_cli, short, summary, teal_cli, Deploy};
use crate::teal::Teal;
use crate::util::{unique_prefix, wait_for, wait_until, IMAGE};
use teal::model::labels::ServiceName;
use teal::model::Canary;

const CONVERGE: Duration = Duration::from_secs(20);
const CLIENTS: usize = 6;

/// One test's service `web`: the old container on `v1` serving under
/// load, and `v2` built from the app image with `env` (`KEY=VALUE` lines).
async fn setup(env: &[&str]) -> (Deploy, Teal, String, String, Load) {
    let prefix = unique_prefix();
    let mut deploy = Deploy::new(&prefix);
    let teal = Teal::builder(&prefix).start().await;
    let v1 = deploy.tag(app_image::image(), "v1").await;
    let lines: Vec<String> = env.iter().map(|pair| format!("ENV {pair}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let v2 = deploy.build_from(app_image::image(), "v2", &lines).await;
    let old = deploy.run("a", &v1, &[]).await;
    teal.wait_served_by(short(&old), CONVERGE).await;
    let load = Load::start(teal.http, CLIENTS);
    more_requests(&load, 100).await;
    (deploy, teal, old, v2, load)
}

fn canary_args<'a>(v2: &'a str, steps: &'a str, step: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "rollout",
        "web",
        "--image",
        v2,
        "--canary",
        steps,
        "--step",
        step,
        "--min-requests",
        "30",
        "--drain",
        "2s",
    ];
    args.extend_from_slice(extra);
    args
}

fn spawn(teal: &Teal, args: &[&str]) -> tokio::process::Child {
    teal_cli(teal, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn teal rollout")
}

/// The first step (10 %), as /status shows it: the old and the new
/// server's weight.
async fn first_step(teal: &Teal, old: &str) -> (u16, u16) {
    wait_for(CONVERGE, "the canary's first step in /status", || async {
        let report = teal.report().await.ok()?;
        let web = report.services.iter().find(|s| s.name == "web")?;
        let canary = web.canary.as_ref().filter(|c| c.new_percent == 10)?;
        assert_eq!(canary.old, [old]);
        let weight = |old_side: bool| {
            web.servers
                .iter()
                .find(|s| (s.container_id == old) == old_side)
                .map(|s| s.weight)
        };
        Some((weight(true)?, weight(false)?))
    })
    .await
}

/// Waits for the spawned rollout; whether it succeeded and what it printed.
async fn finish(rollout: tokio::process::Child, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(Duration::from_secs(90), rollout.wait_with_output())
        .await
        .expect("the rollout ends")
        .expect("wait");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ teal {}\n{output}", args.join(" "));
    (out.status.success(), output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_version_is_promoted_step_by_step_without_a_lost_request() {
    let (deploy, teal, old, v2, load) = setup(&["VERSION=2"]).await;

    let args = canary_args(&v2, "10,50,100", "1500ms", &["--max-error-rate", "1%"]);
    let started = Instant::now();
    let rollout = spawn(&teal, &args);
    let (old_weight, new_weight) = first_step(&teal, &old).await;
    let (ok, output) = finish(rollout, &args).await;
    let took = started.elapsed();
    assert!(ok, "the canary failed:\n{output}");
    more_requests(&load, 200).await;
    let stats = load.stop().await;
    eprintln!(
        "{} (rollout {:.1}s; weights at 10%: old {old_weight}, new {new_weight})",
        summary("good canary", &stats),
        took.as_secs_f64()
    );
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert_eq!((old_weight, new_weight), (256, 28));

    assert!(output.contains("(canary web): completed in"), "{output}");
    assert!(output.contains("canary: promoted after 3 steps"), "{output}");
    for step in ["step 10% for", "step 50% for", "step 100% for"] {
        assert!(output.contains(step), "{step} missing:\n{output}");
    }
    let report = teal.report().await.expect("GET /status");
    let last = &report.deploys[0];
    assert_eq!(
        (last.kind.as_str(), last.outcome),
        ("canary", teal::deploy::Outcome::Completed)
    );
    let canary = last.canary.as_ref().expect("the canary's steps in /status");
    assert!(canary.promoted, "{canary:?}");
    let shares: Vec<u8> = canary.steps.iter().map(|s| s.percent).collect();
    assert_eq!(shares, [10, 50, 100]);
    assert!(
        canary.steps.iter().all(|s| s.passed && s.new.requests >= 30),
        "{canary:?}"
    );
    // The old server's share shrank step by step; at 100 % it got none.
    assert!(
        canary.steps[2].old.requests <= canary.steps[0].old.requests / 10,
        "{canary:?}"
    );
    canary_ended(&teal).await;
    assert_eq!(
        teal.metric("teal_deploys_total{outcome=\"completed\"}").await,
        Some(1.0)
    );
    let new = deploy.running().await;
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old);
    assert!(
        stats.seen.contains_key(short(&new[0])),
        "the new container never served"
    );
}

/// Which container answered one request carrying `X-Canary`.
async fn marked_request(teal: &Teal) -> String {
    let head = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Canary: preview\r\nConnection: close\r\n\r\n";
    let result = crate::http::exchange(teal.http, head, b"").await;
    let body = crate::http::describe(&result);
    body.split_whitespace().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_header_sends_marked_requests_to_the_new_containers_at_every_step() {
    let (deploy, teal, old, v2, load) = setup(&["VERSION=2"]).await;

    let args = canary_args(&v2, "10,50", "3s", &["--canary-header", "X-Canary"]);
    let rollout = spawn(&teal, &args);
    // Once HAProxy loaded the rule (what the rollout waits for before its
    // first step), every marked request reaches the new container.
    let new = wait_for(CONVERGE, "the header rule in the config HAProxy loaded", || async {
        let report = teal.report().await.ok()?;
        let sticky = report.last_reload.as_ref()?.sticky_canaries.get("web")?;
        assert_eq!(sticky.header.as_str(), "X-Canary");
        let web = report.services.iter().find(|s| s.name == "web")?;
        let new = web.servers.iter().find(|s| s.container_id != old)?;
        (sticky.servers == [new.name.clone()]).then(|| new.container_id.clone())
    })
    .await;
    let (mut marked, mut unmarked) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        marked.push(marked_request(&teal).await);
        let plain = crate::http::get(teal.http, "localhost", "/").await;
        unmarked.push(
            crate::http::describe(&plain)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let (ok, output) = finish(rollout, &args).await;
    more_requests(&load, 100).await;
    let stats = load.stop().await;
    eprintln!("{}", summary("canary with a header", &stats));
    assert!(ok, "the canary failed:\n{output}");
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
    assert!(
        marked.iter().all(|by| by == short(&new)),
        "a marked request reached another container than the new {}: {marked:?}",
        short(&new)
    );
    // Unmarked requests still follow the weights: the old one served some.
    assert!(unmarked.iter().any(|by| by == short(&old)), "{unmarked:?}");
    assert!(output.contains("requests with header X-Canary"), "{output}");
    // The rule ended with the canary: a reload without it.
    canary_ended(&teal).await;
    wait_until(CONVERGE, "the header rule gone from the loaded config", || async {
        let report = teal.report().await.expect("GET /status");
        report.last_reload.is_some_and(|r| r.sticky_canaries.is_empty())
    })
    .await;
    assert_eq!(deploy.running().await, [new]);
}

/// The daemon has taken up the end of the canary (the rollout removed it
/// from weights.json): label weights again.
async fn canary_ended(teal: &Teal) {
    wait_until(CONVERGE, "the canary's weights end", || async {
        let report = teal.report().await.expect("GET /status");
        report.services.iter().any(|s| s.name == "web" && s.canary.is_none())
    })
    .await;
}

/// The rollout fails and rolls back; the old container is the one left, and
/// `/status` keeps the rolled-back deploy with its steps.
async fn assert_rolled_back(teal: &Teal, deploy: &Deploy, old: &str, ok: bool, output: &str) {
    assert!(!ok, "the canary succeeded:\n{output}");
    assert!(output.contains("failed and was rolled back"), "{output}");
    assert!(output.contains("canary: rolled back after 1 step"), "{output}");
    assert_eq!(
        deploy.running().await,
        [old.to_owned()],
        "the old container is the one running"
    );
    assert_eq!(
        deploy.replacements_ever().await,
        Vec::<String>::new(),
        "a replacement was left"
    );
    let report = teal.report().await.expect("GET /status");
    let last = &report.deploys[0];
    assert_eq!(last.outcome, teal::deploy::Outcome::RolledBack, "{last:?}");
    let canary = last.canary.as_ref().expect("the canary's steps in /status");
    assert!(!canary.promoted && !canary.steps[0].passed, "{canary:?}");
    canary_ended(teal).await;
    assert_eq!(
        teal.metric("teal_deploys_total{outcome=\"rolled_back\"}").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_failing_one_request_in_five_is_rolled_back_by_its_error_rate() {
    let (deploy, teal, old, v2, load) = setup(&["TEAL_APP_FAIL_EVERY=5"]).await;

    let before = load.requests();
    let args = canary_args(&v2, "10,50,100", "2s", &["--max-error-rate", "1%"]);
    let (ok, output) = run_cli(&teal, &args).await;
    let during = load.requests() - before;
    more_requests(&load, 100).await;
    let stats = load.stop().await;
    // A full switch would have sent every request of the same time to the
    // new version, one in five of them answered 500.
    let full_switch = during / 5;
    eprintln!(
        "{}; a full switch over the rollout's {during} requests: {full_switch} failed",
        summary("failing canary", &stats)
    );
    assert_rolled_back(&teal, &deploy, &old, ok, &output).await;
    assert!(output.contains("is over --max-error-rate 1%"), "{output}");
    assert!(stats.failures > 0, "the bad version was never exercised");
    assert!(
        stats.failures * 10 < full_switch,
        "{} failed, not well under a full switch's {full_switch}",
        stats.failures
    );
    assert!(stats.errors.keys().all(|e| e == "HTTP 500"), "{:?}", stats.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slower_version_is_rolled_back_by_the_latency_ratio() {
    let (deploy, teal, old, v2, load) = setup(&["TEAL_APP_DELAY_MS=100"]).await;

    let args = canary_args(&v2, "10,100", "2s", &["--max-latency-ratio", "3"]);
    let (ok, output) = run_cli(&teal, &args).await;
    more_requests(&load, 100).await;
    let stats = load.stop().await;
    eprintln!("{}", summary("slow canary", &stats));
    assert_rolled_back(&teal, &deploy, &old, ok, &output).await;
    assert!(output.contains("over --max-latency-ratio 3"), "{output}");
    // Slow, not failing: no request was lost to the canary or its rollback.
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
}

/// HAProxy's weight of each server of backend `web` (`show servers state`:
/// the user weight), by container id as `/status` names the servers.
async fn haproxy_weights(teal: &Teal) -> Option<Vec<(String, u16)>> {
    let report = teal.report().await.ok()?;
    let web = report.services.iter().find(|s| s.name == "web")?;
    let socket = teal.state_dir.join("haproxy.sock");
    let table = teal::apply::admin_command(&socket, "show servers state web")
        .await
        .ok()?;
    let mut weights = Vec::new();
    for server in &web.servers {
        let line = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(3) == Some(&server.name.as_str()))?;
        weights.push((server.container_id.clone(), line.get(7)?.parse().ok()?));
    }
    weights.sort();
    Some(weights)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_weights_reach_haproxy_without_a_reload_and_survive_a_restart() {
    let prefix = unique_prefix();
    let deploy = Deploy::new(&prefix);
    let state = tempfile::tempdir().expect("state dir");
    let start = || Teal::builder(&prefix).state_dir(state.path()).start();
    let mut teal = start().await;
    let (a, b) = (deploy.run("a", IMAGE, &[]).await, deploy.run("b", IMAGE, &[]).await);
    let both = |weights: [u16; 2]| {
        let mut expected = vec![(a.clone(), weights[0]), (b.clone(), weights[1])];
        expected.sort();
        expected
    };
    let labels = both([100, 100]);
    wait_until(CONVERGE, "both servers in HAProxy", || async {
        haproxy_weights(&teal).await.as_ref() == Some(&labels)
    })
    .await;
    let reloads = teal.metric("teal_reloads_total{result=\"ok\"}").await;

    let web = ServiceName::parse("web").unwrap();
    let canary = |new_percent| Canary {
        deploy: "abcdef".into(),
        old: vec![a.clone()],
        new_percent,
        header: None,
    };
    teal::weights::store(state.path(), &web, Some(canary(10))).expect("weights.json");
    let at_10 = both([256, 28]);
    wait_until(CONVERGE, "the 10% weights in HAProxy", || async {
        haproxy_weights(&teal).await.as_ref() == Some(&at_10)
    })
    .await;
    assert_eq!(
        teal.metric("teal_reloads_total{result=\"ok\"}").await,
        reloads,
        "a reload"
    );

    // A new teal (and HAProxy) on the same state dir starts with them.
    let stopped = teal.stop();
    assert!(stopped.orphans.is_empty(), "{:?}", stopped.orphans);
    drop(teal);
    teal = start().await;
    wait_until(CONVERGE, "the restarted teal's HAProxy has the 10% weights", || async {
        haproxy_weights(&teal).await.as_ref() == Some(&at_10)
    })
    .await;
    let report = teal.report().await.expect("GET /status");
    let shown = report
        .services
        .iter()
        .find(|s| s.name == "web")
        .and_then(|s| s.canary.clone());
    assert_eq!(shown, Some(canary(10)));

    teal::weights::store(state.path(), &web, None).expect("weights.json");
    wait_until(CONVERGE, "the label weights again", || async {
        haproxy_weights(&teal).await.as_ref() == Some(&labels)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_without_enough_traffic_waits_then_says_so_and_rolls_back() {
    let (deploy, teal, old, v2, load) = setup(&["VERSION=2"]).await;
    // No more traffic: the step cannot reach --min-requests.
    load.stop().await;
    let args = canary_args(&v2, "50", "500ms", &[]);
    let (ok, output) = run_cli(&teal, &args).await;
    assert_rolled_back(&teal, &deploy, &old, ok, &output).await;
    assert!(
        output.contains("of --min-requests 30 so far: holding the step longer, up to 2.5s"),
        "{output}"
    );
    assert!(output.contains("too little traffic to judge"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_canary_rolls_back_without_a_lost_request() {
    let (deploy, teal, old, v2, load) = setup(&["VERSION=2"]).await;
    let args = canary_args(&v2, "10,100", "60s", &[]);
    let rollout = spawn(&teal, &args);
    first_step(&teal, &old).await;
    more_requests(&load, 200).await;
    crate::util::signal(rollout.id().expect("pid") as i32, nix::sys::signal::Signal::SIGINT);
    let (ok, output) = finish(rollout, &args).await;
    more_requests(&load, 100).await;
    let stats = load.stop().await;
    eprintln!("{}", summary("interrupted canary", &stats));
    assert_rolled_back(&teal, &deploy, &old, ok, &output).await;
    assert!(output.contains("canary step 10%: interrupted"), "{output}");
    assert_eq!(stats.failures, 0, "failed requests: {:?}", stats.errors);
}
