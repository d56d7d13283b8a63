use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::model::tests::{facts, scope};
use crate::model::{ContainerFacts, ContainerUpdate, Inventory};

/// A container of `service`; `bad` makes the fake HAProxy refuse its service.
fn container(id: &str, service: &str, bad: bool) -> ContainerFacts {
    let mut f = facts(id, service, "10.0.0.2");
    let host = if bad { "bad.example" } else { "ok.example" };
    f.labels.insert("teal.host", format!("{service}.{host}"));
    f
}

fn snapshot(containers: Vec<ContainerFacts>) -> Snapshot {
    let mut inventory = Inventory::default();
    inventory.apply(ContainerUpdate::Resync(containers));
    inventory.snapshot(&scope())
}

/// The fake `haproxy -c`: refuses every service with a bad host, in
/// HAProxy's words.
fn fake_haproxy(snapshot: &Snapshot) -> Result<(), String> {
    let bad: Vec<String> = snapshot
        .services
        .iter()
        .filter(|s| s.hosts.iter().any(|h| h.as_str().ends_with("bad.example")))
        .map(|s| {
            format!(
                "[ALERT]    (42) : config : parsing [haproxy.cfg:9]: backend {}: bad keyword",
                s.name
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n[ALERT]    (42) : config : Error(s) found in configuration file : haproxy.cfg",
            bad.join("\n")
        ))
    }
}

/// Narrows with `validate`, counting its checks (the one of `next` too).
fn narrow(
    good: &Snapshot,
    next: &Snapshot,
    checks: &Cell<usize>,
    validate: impl Fn(&Snapshot) -> Result<(), String>,
) -> Option<Narrowed> {
    let check = |s: &Snapshot| {
        checks.set(checks.get() + 1);
        validate(s)
    };
    let refusal = check(next).expect_err("next must be refused");
    let mut narrowing = Narrowing::new(good.clone(), next.clone(), refusal);
    while let Some(candidate) = narrowing.question() {
        narrowing.answer(check(&candidate));
    }
    narrowing.finish()
}

fn refused_with(good: &Snapshot, next: &Snapshot, checks: &Cell<usize>) -> Option<Narrowed> {
    narrow(good, next, checks, fake_haproxy)
}

fn names(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.services.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn a_new_refused_service_is_left_out_and_the_rest_applied() {
    let good = snapshot(vec![container("a1", "a", false), container("b1", "b", false)]);
    let next = snapshot(vec![
        container("a1", "a", false),
        container("a2", "a", false),
        container("b1", "b", false),
        container("c1", "c", true),
        container("c2", "c", true),
    ]);
    let checks = Cell::new(0);
    let narrowed = refused_with(&good, &next, &checks).unwrap();
    assert_eq!(names(&narrowed.snapshot), ["a", "b"]);
    assert_eq!(
        narrowed.snapshot.services[0].servers.len(),
        2,
        "a's new replica is applied"
    );
    assert_eq!(narrowed.refused.len(), 1);
    assert_eq!(narrowed.refused[0].service.as_str(), "c");
    assert_eq!(
        narrowed.refused[0].reason,
        "parsing [haproxy.cfg:9]: backend c: bad keyword"
    );
    let excluded: Vec<&str> = narrowed
        .snapshot
        .excluded
        .iter()
        .map(|e| e.container_name.as_str())
        .collect();
    assert_eq!(excluded, ["app-c1", "app-c2"]);
    assert!(narrowed.snapshot.excluded[0]
        .reason
        .starts_with("HAProxy cannot load service c: parsing"));
    // next, then: without the changes, with a (the first half).
    assert_eq!(checks.get(), 3);
}

#[test]
fn a_refused_change_reverts_the_service_to_its_last_good_form() {
    let good = snapshot(vec![container("a1", "a", false), container("b1", "b", false)]);
    // a's newest container brings a setting HAProxy refuses.
    let mut bad = container("a22", "a", true);
    bad.created = "2026-01-02T00:00:00Z".into();
    let next = snapshot(vec![
        container("a1", "a", false),
        bad,
        container("b1", "b", false),
        container("b2", "b", false),
    ]);
    let checks = Cell::new(0);
    let narrowed = refused_with(&good, &next, &checks).unwrap();
    assert_eq!(narrowed.snapshot.services[0], good.services[0]);
    assert_eq!(narrowed.snapshot.services[1], next.services[1]);
    let excluded: Vec<&str> = narrowed
        .snapshot
        .excluded
        .iter()
        .map(|e| e.container_name.as_str())
        .collect();
    assert_eq!(excluded, ["app-a22"], "the container a1 is still served as it was");
}

#[test]
fn several_refused_services_among_many_are_all_found() {
    let good = snapshot(vec![]);
    let services = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];
    let next = snapshot(
        services
            .iter()
            .map(|s| container(&format!("{s}x"), s, ["s2", "s6"].contains(s)))
            .collect(),
    );
    let checks = Cell::new(0);
    let narrowed = refused_with(&good, &next, &checks).unwrap();
    let refused: Vec<&str> = narrowed.refused.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(refused, ["s2", "s6"]);
    assert_eq!(names(&narrowed.snapshot), ["s0", "s1", "s3", "s4", "s5", "s7"]);
    // next, the last good services, then 8 in bisection.
    assert_eq!(checks.get(), 10);
}

#[test]
fn when_even_the_last_good_services_are_refused_the_rendering_is_at_fault() {
    let good = snapshot(vec![container("a1", "a", false)]);
    let next = snapshot(vec![container("a1", "a", false), container("a2", "a", false)]);
    let checks = Cell::new(0);
    let refuse_all = |_: &Snapshot| Err("template: bad".to_owned());
    assert_eq!(narrow(&good, &next, &checks, refuse_all), None);
    assert_eq!(checks.get(), 2, "next, then the last good services");
}

#[test]
fn alerts_lose_their_prefixes_and_closing_lines() {
    let message = "[ALERT]    (12838) : config : parsing [t.cfg:8]: too many words, truncating after word 64.\n\
        [ALERT]    (12838) : config : Error(s) found in configuration file : t.cfg\n\
        [ALERT]    (12838) : config : Fatal errors found in configuration.";
    assert_eq!(
        alert_reason(message),
        "parsing [t.cfg:8]: too many words, truncating after word 64."
    );
    assert_eq!(alert_reason("no alert at all"), "no alert at all");
}

#[test]
fn a_held_service_waits_for_a_new_input_and_then_for_its_backoff() {
    let good = snapshot(vec![container("a1", "a", false)]);
    let next = snapshot(vec![container("a1", "a", false), container("c1", "c", true)]);
    let checks = Cell::new(0);
    let narrowed = refused_with(&good, &next, &checks).unwrap();
    let mut held = Held::default();
    let start = Instant::now();
    held.settle(&next, &narrowed.refused, start);

    // Same input, later: still held, never checked again.
    let later = start + Duration::from_secs(3600);
    let (candidate, refusals) = held.hold_back(&narrowed.snapshot, &next, later);
    assert_eq!(names(&candidate), ["a"]);
    assert_eq!(refusals, narrowed.refused);
    assert_eq!(candidate.excluded.len(), 1);
    assert_eq!(held.next_retry(&next), None);

    // A new replica of c: held until its wait is over, then tried.
    let scaled = snapshot(vec![
        container("a1", "a", false),
        container("c1", "c", true),
        container("c2", "c", true),
    ]);
    assert_eq!(held.next_retry(&scaled), Some(start + Duration::from_secs(1)));
    let (candidate, _) = held.hold_back(&narrowed.snapshot, &scaled, start + Duration::from_millis(500));
    assert_eq!(names(&candidate), ["a"]);
    assert_eq!(candidate.excluded.len(), 2, "both of c's containers are listed");
    let retry = start + Duration::from_secs(1);
    let (candidate, refusals) = held.hold_back(&narrowed.snapshot, &scaled, retry);
    assert_eq!(names(&candidate), ["a", "c"]);
    assert!(refusals.is_empty());

    // Refused again: the next wait is twice as long.
    held.settle(&scaled, &narrowed.refused, retry);
    let fixed = snapshot(vec![container("a1", "a", false), container("c3", "c", false)]);
    assert_eq!(held.next_retry(&fixed), Some(retry + Duration::from_secs(2)));

    // Accepted (not refused in the next apply): forgotten.
    held.settle(&fixed, &[], retry + Duration::from_secs(2));
    assert!(held.is_empty());
}

#[test]
fn a_held_service_that_is_gone_is_forgotten() {
    let mut held = Held::default();
    let next = snapshot(vec![container("c1", "c", true)]);
    let refusal = Refusal {
        service: next.services[0].name.clone(),
        reason: "bad".into(),
    };
    held.settle(&next, std::slice::from_ref(&refusal), Instant::now());
    let gone = snapshot(vec![]);
    let (candidate, refusals) = held.hold_back(&Snapshot::default(), &gone, Instant::now());
    assert!(candidate.services.is_empty() && refusals.is_empty());
    held.settle(&gone, &[refusal], Instant::now());
    assert!(held.is_empty());
}
