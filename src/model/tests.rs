use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::*;

pub(crate) fn facts(id: &str, service: &str, ip: &str) -> ContainerFacts {
    ContainerFacts {
        id: ContainerId(format!("{id:0<64}")),
        name: format!("app-{id}"),
        image: "app:1".into(),
        created: format!("2026-01-01T00:00:0{}Z", id.len() % 10),
        started_at: "2026-01-01T00:00:10Z".into(),
        labels: [("teal.service", service)].into_iter().collect(),
        running: true,
        paused: false,
        health: Health::None,
        host_network: false,
        networks: vec![NetworkAddress {
            name: "net".into(),
            ip: Some(ip.parse().unwrap()),
            overlay: false,
        }],
        exposed_tcp_ports: vec![8080],
        node: None,
    }
}

pub(crate) fn scope() -> Scope {
    Scope {
        label_prefix: "teal".into(),
        project: None,
        own_networks: None,
        frontend_ports: BTreeSet::from([80]),
    }
}

fn only_server(inventory: &Inventory) -> Server {
    let snapshot = inventory.snapshot(&scope());
    assert_eq!(snapshot.services.len(), 1);
    snapshot.services[0].servers[0].clone()
}

#[test]
fn a_running_container_becomes_a_server() {
    let mut inv = Inventory::default();
    assert!(inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2"))));
    let server = only_server(&inv);
    assert_eq!(server.address, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(server.port, 8080);
    assert_eq!(server.state, ServerState::Ready);
    assert_eq!(server.name, "app-a-a0000000");
}

#[test]
fn same_facts_twice_is_no_change() {
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
    assert!(!inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2"))));
    assert!(!inv.apply(ContainerUpdate::Resync(vec![facts("a", "web", "10.0.0.2")])));
}

#[test]
fn drain_lasts_until_the_container_restarts_or_goes() {
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(a.clone()));
    assert!(inv.apply(ContainerUpdate::Drain(a.id.clone())));
    assert_eq!(only_server(&inv).state, ServerState::Drain);
    // A health event in between keeps it draining; a resync too.
    inv.apply(ContainerUpdate::Upsert(a.clone()));
    inv.apply(ContainerUpdate::Resync(vec![a.clone()]));
    assert_eq!(only_server(&inv).state, ServerState::Drain);
    let restarted = ContainerFacts {
        started_at: "later".into(),
        ..a.clone()
    };
    inv.apply(ContainerUpdate::Upsert(restarted));
    assert_eq!(only_server(&inv).state, ServerState::Ready);
    inv.apply(ContainerUpdate::Upsert(ContainerFacts {
        running: false,
        ..a.clone()
    }));
    assert!(inv.snapshot(&scope()).services[0].servers.is_empty());
    inv.apply(ContainerUpdate::Remove(a.id));
    assert!(inv.snapshot(&scope()).services.is_empty());
}

/// `docker restart`, `docker-compose up -d` (stop, then create and start a
/// replacement): the service stays, without a server, so HAProxy holds its
/// requests instead of answering 404.
#[test]
fn a_stopped_container_keeps_its_service_until_destroyed() {
    let mut inv = Inventory::default();
    let old = facts("a", "web", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(old.clone()));
    inv.apply(ContainerUpdate::Drain(old.id.clone()));
    assert!(inv.apply(ContainerUpdate::Stopped(old.id.clone())));
    assert!(!inv.apply(ContainerUpdate::Stopped(old.id.clone())));
    let snapshot = inv.snapshot(&scope());
    assert_eq!(snapshot.services[0].name.to_string(), "web");
    assert!(snapshot.services[0].servers.is_empty());
    assert!(
        snapshot.excluded.is_empty(),
        "a stopped container is not left out: {snapshot:?}"
    );
    // Restarted: routed again, not draining.
    inv.apply(ContainerUpdate::Upsert(ContainerFacts {
        started_at: "later".into(),
        ..old.clone()
    }));
    assert_eq!(only_server(&inv).state, ServerState::Ready);
    // Replaced: the new container is the one server while the old one lingers.
    inv.apply(ContainerUpdate::Stopped(old.id.clone()));
    inv.apply(ContainerUpdate::Upsert(facts("b", "web", "10.0.0.3")));
    assert_eq!(only_server(&inv).address.to_string(), "10.0.0.3");
    inv.apply(ContainerUpdate::Remove(old.id));
    assert_eq!(only_server(&inv).address.to_string(), "10.0.0.3");
    // A stop of a container teal never saw running adds nothing.
    assert!(!inv.apply(ContainerUpdate::Stopped(ContainerId("zz".into()))));
}

/// `docker compose up -d` (v2) recreating a one-replica service: stop the
/// old container, create the new one, remove the old, then start the new.
/// The created container keeps the service between the remove and the
/// start; a created container of no known compose service keeps nothing.
#[test]
fn a_created_compose_replacement_keeps_its_service_until_it_starts() {
    let compose = |id: &str, ip: &str| {
        let mut f = facts(id, "web", ip);
        f.labels.insert(COMPOSE_PROJECT_LABEL, "shop");
        f.labels.insert(COMPOSE_SERVICE_LABEL, "website");
        f
    };
    let created = |f: &ContainerFacts| ContainerFacts {
        running: false,
        ..f.clone()
    };
    let mut inv = Inventory::default();
    assert!(!inv.apply(ContainerUpdate::Upsert(created(&compose("a", "10.0.0.2")))));
    let old = compose("a", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(old.clone()));
    inv.apply(ContainerUpdate::Stopped(old.id.clone()));
    assert!(!inv.apply(ContainerUpdate::Upsert(created(&facts("x", "web", "10.0.0.9")))));
    let new = compose("b", "10.0.0.3");
    assert!(inv.apply(ContainerUpdate::Upsert(created(&new))));
    inv.apply(ContainerUpdate::Remove(old.id));
    let snapshot = inv.snapshot(&scope());
    assert_eq!(snapshot.services[0].name.to_string(), "web");
    assert!(snapshot.services[0].servers.is_empty());
    assert!(snapshot.excluded.is_empty(), "{snapshot:?}");
    inv.apply(ContainerUpdate::Upsert(new));
    assert_eq!(only_server(&inv).address.to_string(), "10.0.0.3");
}

#[test]
fn health_and_pause_gate_routing() {
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    for (health, paused, state) in [
        (Health::Starting, false, ServerState::Maint),
        (Health::Healthy, false, ServerState::Ready),
        (Health::Unhealthy, false, ServerState::Maint),
        (Health::None, true, ServerState::Maint),
    ] {
        inv.apply(ContainerUpdate::Upsert(ContainerFacts {
            health,
            paused,
            ..a.clone()
        }));
        assert_eq!(only_server(&inv).state, state, "{health:?} paused={paused}");
    }
}

#[test]
fn a_health_event_changes_only_a_running_container_it_knows() {
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    assert!(!inv.apply(ContainerUpdate::Health(a.id.clone(), Health::Healthy)));
    inv.apply(ContainerUpdate::Upsert(ContainerFacts {
        health: Health::Starting,
        ..a.clone()
    }));
    assert_eq!(only_server(&inv).state, ServerState::Maint);
    assert!(inv.apply(ContainerUpdate::Health(a.id.clone(), Health::Healthy)));
    assert_eq!(only_server(&inv).state, ServerState::Ready);
    assert!(!inv.apply(ContainerUpdate::Health(a.id.clone(), Health::Healthy)));
    // Draining stays draining.
    inv.apply(ContainerUpdate::Drain(a.id.clone()));
    assert!(inv.apply(ContainerUpdate::Health(a.id.clone(), Health::Unhealthy)));
    assert!(inv.apply(ContainerUpdate::Health(a.id.clone(), Health::Healthy)));
    assert_eq!(only_server(&inv).state, ServerState::Drain);
    inv.apply(ContainerUpdate::Stopped(a.id.clone()));
    assert!(!inv.apply(ContainerUpdate::Health(a.id, Health::Unhealthy)));
}

#[test]
fn a_bad_label_excludes_only_that_container() {
    let mut inv = Inventory::default();
    let mut bad = facts("b", "web", "10.0.0.3");
    bad.labels.insert("teal.port", "abc");
    inv.apply(ContainerUpdate::Upsert(facts("a", "web", "10.0.0.2")));
    inv.apply(ContainerUpdate::Upsert(bad));
    let snapshot = inv.snapshot(&scope());
    assert_eq!(snapshot.services[0].servers.len(), 1);
    assert_eq!(snapshot.excluded.len(), 1);
    assert!(
        snapshot.excluded[0].reason.contains("teal.port"),
        "{}",
        snapshot.excluded[0].reason
    );
}

#[test]
fn network_choice() {
    let mut two = facts("a", "web", "10.0.0.2");
    two.networks.push(NetworkAddress {
        name: "back".into(),
        ip: Some("10.1.0.2".parse().unwrap()),
        overlay: false,
    });
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(two.clone()));
    assert!(inv.snapshot(&scope()).excluded[0].reason.contains("several networks"));

    let own = Scope {
        own_networks: Some(BTreeSet::from(["back".to_string()])),
        ..scope()
    };
    assert_eq!(
        inv.snapshot(&own).services[0].servers[0].address.to_string(),
        "10.1.0.2"
    );

    two.labels.insert("teal.network", "net");
    inv.apply(ContainerUpdate::Upsert(two));
    assert_eq!(
        inv.snapshot(&scope()).services[0].servers[0].address.to_string(),
        "10.0.0.2"
    );
}

#[test]
fn unreachable_overlay_is_never_rendered() {
    let mut on_overlay = facts("a", "web", "10.0.9.2");
    on_overlay.networks[0].overlay = true;
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(on_overlay));
    let snapshot = inv.snapshot(&scope());
    // The service stays (HAProxy answers 503 for it), with no server.
    assert!(snapshot.services[0].servers.is_empty());
    assert!(snapshot.excluded[0].reason.contains("overlay"));
    let attached = Scope {
        own_networks: Some(BTreeSet::from(["net".to_string()])),
        ..scope()
    };
    assert_eq!(inv.snapshot(&attached).services.len(), 1);
}

#[test]
fn host_network_is_reached_on_loopback() {
    let mut host = facts("a", "web", "10.0.0.2");
    host.host_network = true;
    host.networks.clear();
    host.labels.insert("teal.port", "18001");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(host));
    let server = only_server(&inv);
    assert_eq!((server.address.to_string().as_str(), server.port), ("127.0.0.1", 18001));
}

#[test]
fn host_network_never_reaches_teals_own_listeners() {
    let mut host = facts("a", "web", "10.0.0.2");
    host.host_network = true;
    host.networks.clear();
    // scope() says teal listens on 80; a status port would be in the set too.
    host.labels.insert("teal.port", "80");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(host));
    let snapshot = inv.snapshot(&scope());
    assert!(snapshot.services.iter().all(|s| s.servers.is_empty()));
    assert!(
        snapshot.excluded[0].reason.contains("teal's own listeners"),
        "{}",
        snapshot.excluded[0].reason
    );
}

#[test]
fn project_scope_filters() {
    let mut mine = facts("a", "web", "10.0.0.2");
    mine.labels.insert(COMPOSE_PROJECT_LABEL, "p1");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(mine));
    inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
    let p1 = Scope {
        project: Some("p1".into()),
        ..scope()
    };
    assert_eq!(inv.snapshot(&p1).services[0].servers.len(), 1);
    assert_eq!(inv.snapshot(&scope()).services[0].servers.len(), 2);
}

#[test]
fn newest_container_sets_service_settings() {
    let mut old = facts("a", "web", "10.0.0.2");
    old.labels.insert("teal.host", "old.example");
    let mut new = facts("bb", "web", "10.0.0.3");
    new.labels.insert("teal.host", "new.example");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(old));
    inv.apply(ContainerUpdate::Upsert(new));
    let snapshot = inv.snapshot(&scope());
    assert_eq!(
        snapshot.services[0].hosts,
        vec![labels::HostName::parse("new.example").unwrap()]
    );
}

#[test]
fn changes_and_structure() {
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(a.clone()));
    let one = inv.snapshot(&scope());
    inv.apply(ContainerUpdate::Drain(a.id.clone()));
    let drained = inv.snapshot(&scope());
    assert!(one.same_services(&drained));
    assert!(matches!(one.changes(&drained)[..], [Change::ServerUpdated { .. }]));

    inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
    let two = inv.snapshot(&scope());
    assert!(drained.same_services(&two));
    let mut other = facts("ccc", "api", "10.0.0.4");
    other.labels.insert("teal.host", "api.example");
    inv.apply(ContainerUpdate::Upsert(other));
    assert!(!two.same_services(&inv.snapshot(&scope())));
    assert!(matches!(drained.changes(&two)[..], [Change::ServerAdded { .. }]));
    assert!(matches!(two.changes(&drained)[..], [Change::ServerRemoved { .. }]));
}

#[test]
fn container_and_swarm_resyncs_leave_each_other_alone() {
    let mut inv = Inventory::default();
    let container = facts("a", "web", "10.0.0.2");
    let task = facts("bb", "api", "10.0.9.2");
    inv.apply(ContainerUpdate::Resync(vec![container.clone()]));
    assert!(inv.apply(ContainerUpdate::SwarmResync(vec![task.clone()])));
    // A fresh container listing keeps the task; an empty task listing keeps the container.
    assert!(!inv.apply(ContainerUpdate::Resync(vec![container.clone()])));
    assert!(inv.knows(&task.id));
    assert!(inv.apply(ContainerUpdate::SwarmResync(Vec::new())));
    assert!(inv.knows(&container.id) && !inv.knows(&task.id));
    assert!(inv.apply(ContainerUpdate::Resync(Vec::new())));
    assert!(!inv.knows(&container.id));
}

#[test]
fn a_task_container_belongs_to_the_swarm_side() {
    let mut inv = Inventory::default();
    let mut from_container = facts("a", "web", "10.0.9.2");
    from_container.name = "container-view".into();
    let mut from_task = from_container.clone();
    from_task.name = "task-view".into();
    // Seen first as a container (it carries container labels too): the task listing takes it over.
    inv.apply(ContainerUpdate::Upsert(from_container.clone()));
    assert!(inv.apply(ContainerUpdate::SwarmResync(vec![from_task.clone()])));
    assert!(!inv.apply(ContainerUpdate::Upsert(from_container.clone())));
    assert!(!inv.apply(ContainerUpdate::Resync(vec![from_container.clone()])));
    assert_eq!(only_server(&inv).container_name, "task-view");
    // Drain and Remove come from container events and apply to tasks too.
    assert!(inv.apply(ContainerUpdate::Drain(from_task.id.clone())));
    assert!(!inv.apply(ContainerUpdate::SwarmResync(vec![from_task.clone()])));
    assert_eq!(only_server(&inv).state, ServerState::Drain);
    assert!(inv.apply(ContainerUpdate::Remove(from_task.id.clone())));
    assert!(inv.snapshot(&scope()).services.is_empty());
}

#[test]
fn project_scope_also_matches_a_stack() {
    let mut task = facts("a", "web", "10.0.9.2");
    task.labels.insert(STACK_NAMESPACE_LABEL, "shop");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::SwarmResync(vec![task]));
    inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
    let shop = Scope {
        project: Some("shop".into()),
        ..scope()
    };
    assert_eq!(inv.snapshot(&shop).services[0].servers.len(), 1);
}

#[test]
fn a_service_nobody_can_reach_keeps_its_routes_without_servers() {
    let mut lost = facts("a", "web", "10.0.0.2");
    lost.labels.insert("teal.network", "elsewhere");
    lost.labels.insert("teal.host", "web.example");
    let mut bad_label = facts("bb", "api", "10.0.0.3");
    bad_label.labels.insert("teal.port", "x");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(lost));
    inv.apply(ContainerUpdate::Upsert(bad_label));
    let snapshot = inv.snapshot(&scope());
    // Only the one whose labels parsed: bad labels say nothing trustworthy.
    assert_eq!(snapshot.services.len(), 1);
    let web = &snapshot.services[0];
    assert_eq!((web.name.as_str(), web.servers.len()), ("web", 0));
    assert_eq!(web.hosts[0].as_str(), "web.example");
    assert_eq!(snapshot.excluded.len(), 2);
}

fn tcp(id: &str, service: &str, listen: &str, created: &str) -> ContainerFacts {
    let mut f = facts(id, service, "10.0.0.2");
    f.labels.insert("teal.mode", "tcp");
    f.labels.insert("teal.listen", listen);
    f.created = created.into();
    f
}

#[test]
fn two_tcp_services_on_one_port_the_older_keeps_it() {
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(tcp("a", "zdb", "5432", "2026-01-01T00:00:01Z")));
    inv.apply(ContainerUpdate::Upsert(tcp(
        "bb",
        "adb",
        "5432",
        "2026-01-01T00:00:02Z",
    )));
    inv.apply(ContainerUpdate::Upsert(tcp(
        "ccc",
        "cache",
        "6379",
        "2026-01-01T00:00:03Z",
    )));
    let snapshot = inv.snapshot(&scope());
    let names: Vec<&str> = snapshot.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["cache", "zdb"]);
    assert_eq!(snapshot.excluded.len(), 1);
    assert_eq!(snapshot.excluded[0].container_name, "app-bb");
    assert!(snapshot.excluded[0].reason.contains("already taken by tcp service zdb"));
}

#[test]
fn a_tcp_service_cannot_take_teals_own_ports() {
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(tcp("a", "db", "80", "2026-01-01T00:00:01Z")));
    let snapshot = inv.snapshot(&scope());
    assert!(snapshot.services.is_empty());
    assert!(snapshot.excluded[0].reason.contains("teal's own listeners"));
}

#[test]
fn https_redirect_is_a_service_setting() {
    let mut f = facts("a", "web", "10.0.0.2");
    f.labels.insert("teal.https-redirect", "true");
    let mut inv = Inventory::default();
    inv.apply(ContainerUpdate::Upsert(f));
    assert!(inv.snapshot(&scope()).services[0].https_redirect);
}

#[test]
fn taking_servers_out_is_told_apart() {
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(a.clone()));
    inv.apply(ContainerUpdate::Upsert(facts("bb", "web", "10.0.0.3")));
    let two = inv.snapshot(&scope());
    inv.apply(ContainerUpdate::Drain(a.id.clone()));
    let drained = inv.snapshot(&scope());
    assert!(two.only_takes_servers_out(&drained));
    inv.apply(ContainerUpdate::Remove(a.id.clone()));
    assert!(drained.only_takes_servers_out(&inv.snapshot(&scope())));
    assert!(!drained.only_takes_servers_out(&two), "back to ready is not urgent");
    assert!(!two.only_takes_servers_out(&two), "no change");
}

#[test]
fn only_the_labels_teal_reads_are_kept() {
    assert!(reads_label("teal", "teal.service"));
    assert!(reads_label("teal", "teal.health.interval"));
    assert!(reads_label("teal", COMPOSE_PROJECT_LABEL));
    assert!(reads_label("teal", COMPOSE_SERVICE_LABEL));
    assert!(reads_label("teal", STACK_NAMESPACE_LABEL));
    assert!(!reads_label("teal", "tealx.service"));
    assert!(!reads_label("teal", "com.docker.compose.config-hash"));
    assert!(!reads_label("other", "teal.service"));
}

/// The snapshot built from scratch, without the services kept from the last one.
fn built_anew(inv: &Inventory) -> Snapshot {
    *inv.built.lock().unwrap() = snapshot::Built::default();
    inv.snapshot(&scope())
}

#[test]
fn a_change_rebuilds_only_its_service_and_builds_the_same() {
    let mut inv = Inventory::default();
    let (a, b, c) = (
        facts("a", "web", "10.0.0.2"),
        facts("bb", "web", "10.0.0.3"),
        facts("c", "api", "10.0.0.4"),
    );
    inv.apply(ContainerUpdate::Resync(vec![a.clone(), b.clone(), c.clone()]));
    let mut last = inv.snapshot(&scope());
    let starting = ContainerFacts {
        health: Health::Starting,
        ..facts("d", "web", "10.0.0.5")
    };
    let updates = [
        ContainerUpdate::Drain(a.id.clone()),
        ContainerUpdate::Upsert(starting.clone()),
        ContainerUpdate::Upsert(ContainerFacts {
            health: Health::Healthy,
            ..starting
        }),
        ContainerUpdate::Stopped(a.id.clone()),
        ContainerUpdate::Upsert(ContainerFacts { running: false, ..b }),
        ContainerUpdate::Remove(a.id.clone()),
        ContainerUpdate::Resync(vec![c.clone(), facts("e", "web", "10.0.0.6")]),
    ];
    for update in updates {
        assert!(inv.apply(update.clone()), "{update:?}");
        let next = inv.snapshot(&scope());
        assert_eq!(next, built_anew(&inv), "after {update:?}");
        let api = |s: &Snapshot| s.services.iter().find(|s| s.name.as_str() == "api").cloned().unwrap();
        assert!(Arc::ptr_eq(&api(&last), &api(&next)), "api rebuilt after {update:?}");
        assert!(
            !Arc::ptr_eq(&last.services[1], &next.services[1]),
            "web kept after {update:?}"
        );
        last = inv.snapshot(&scope());
    }
}

#[test]
fn the_groups_follow_every_change_between_snapshots() {
    let names = |s: &Snapshot| s.services.iter().map(|s| s.name.to_string()).collect::<Vec<_>>();
    let mut inv = Inventory::default();
    let a = facts("a", "web", "10.0.0.2");
    inv.apply(ContainerUpdate::Upsert(a.clone()));
    assert_eq!(names(&inv.snapshot(&scope())), ["web"]);
    // Relabelled while stopped: it moves to the service its labels name now.
    inv.apply(ContainerUpdate::Upsert(ContainerFacts {
        running: false,
        ..facts("a", "api", "10.0.0.2")
    }));
    assert_eq!(names(&inv.snapshot(&scope())), ["api"]);
    // A container whose labels do not parse is left out until it is gone.
    let mut bad = facts("b", "web", "10.0.0.3");
    bad.labels.insert("teal.port", "abc");
    inv.apply(ContainerUpdate::Upsert(bad.clone()));
    assert_eq!(inv.snapshot(&scope()).excluded.len(), 1);
    inv.apply(ContainerUpdate::Remove(bad.id.clone()));
    let snapshot = inv.snapshot(&scope());
    assert!(snapshot.excluded.is_empty());
    assert_eq!(snapshot, built_anew(&inv));
    // Another scope groups anew, and so does the first one again.
    let other = Scope {
        label_prefix: "other".into(),
        ..scope()
    };
    assert!(inv.snapshot(&other).services.is_empty());
    inv.apply(ContainerUpdate::Remove(a.id.clone()));
    assert!(inv.snapshot(&scope()).services.is_empty());
}
