//! Property: on an HAProxy whose servers are those of snapshot `a`, the
//! commands of `plan(a, b)` leave exactly the servers of `b`. HAProxy's
//! server table is modelled in process; `integration/runtime_api.rs` checks
//! one plan against a real HAProxy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::plan;
use crate::model::labels::{Balance, HealthCheck, Mode, ServiceName};
use crate::model::{ContainerId, Server, ServerState, Service, Snapshot};
use crate::reconcile::Command;
use crate::render::config_weight;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    address: IpAddr,
    port: u16,
    weight: u16,
    state: ServerState,
}

/// `backend/server` -> what HAProxy holds for it.
type Table = BTreeMap<String, Row>;

/// HAProxy after a reload on `snapshot`'s config, states restored from the
/// server-state file.
fn loaded(snapshot: &Snapshot) -> Table {
    servers(snapshot)
        .map(|(key, server)| {
            let row = Row {
                address: server.address,
                port: server.port,
                weight: config_weight(server),
                state: server.state,
            };
            (key, row)
        })
        .collect()
}

/// What must hold for `snapshot`: a draining server's weight does not
/// matter (it takes no new requests) until it leaves drain.
fn wanted(snapshot: &Snapshot) -> BTreeMap<String, (IpAddr, u16, ServerState, Option<u16>)> {
    servers(snapshot)
        .map(|(key, s)| {
            (
                key,
                (s.address, s.port, s.state, weight_that_matters(s.state, s.weight)),
            )
        })
        .collect()
}

fn seen(table: &Table) -> BTreeMap<String, (IpAddr, u16, ServerState, Option<u16>)> {
    table
        .iter()
        .map(|(key, r)| {
            (
                key.clone(),
                (r.address, r.port, r.state, weight_that_matters(r.state, r.weight)),
            )
        })
        .collect()
}

fn weight_that_matters(state: ServerState, weight: u16) -> Option<u16> {
    (state != ServerState::Drain).then_some(weight)
}

fn servers(snapshot: &Snapshot) -> impl Iterator<Item = (String, &Server)> {
    snapshot
        .services
        .iter()
        .flat_map(|svc| svc.servers.iter().map(move |s| (format!("{}/{}", svc.name, s.name), s)))
}

fn row(table: &mut Table, target: String) -> Result<&mut Row, String> {
    table.get_mut(&target).ok_or(format!("No such server {target}"))
}

/// HAProxy 2.6's runtime API, as far as teal uses it.
fn run(table: &mut Table, command: &Command) -> Result<(), String> {
    match command {
        Command::AddServer {
            target,
            address,
            port,
            weight,
            ..
        } => {
            let key = target.to_string();
            if table.contains_key(&key) {
                return Err(format!("Already exists a server with the same name {key}"));
            }
            // Born in maintenance.
            let born = Row {
                address: *address,
                port: *port,
                weight: *weight,
                state: ServerState::Maint,
            };
            table.insert(key, born);
        }
        Command::EnableHealth(target) => {
            row(table, target.to_string())?;
        }
        Command::SetState(target, state) => row(table, target.to_string())?.state = *state,
        Command::SetWeight(target, weight) => row(table, target.to_string())?.weight = *weight,
        Command::SetAddr { target, address, port } => {
            let row = row(table, target.to_string())?;
            (row.address, row.port) = (*address, *port);
        }
        Command::DelServer(target) => {
            if row(table, target.to_string())?.state != ServerState::Maint {
                return Err(format!("Only servers in maintenance mode can be deleted: {target}"));
            }
            table.remove(&target.to_string());
        }
    }
    Ok(())
}

/// One server, or none, for each of five names in each of two services.
fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    let server = (
        0..3u8,
        prop::sample::select(vec![8080u16, 9090]),
        prop::sample::select(vec![1u16, 50, 100]),
        prop::sample::select(vec![ServerState::Ready, ServerState::Drain, ServerState::Maint]),
        prop::option::weighted(0.2, Just(50u32)),
    );
    prop::collection::vec(prop::option::of(server), 10).prop_map(|slots| {
        let mut services: Vec<Service> = ["api", "web"].into_iter().map(service).collect();
        for (i, slot) in slots.into_iter().enumerate() {
            if let Some((ip, port, weight, state, maxconn)) = slot {
                services[i / 5].servers.push(Server {
                    name: format!("app-{}", i % 5),
                    address: IpAddr::from([10, 0, 0, 2 + ip]),
                    port,
                    weight,
                    maxconn,
                    state,
                    reason: None,
                    slot: None,
                    drained: false,
                    container_id: ContainerId(format!("{i:0<64}")),
                    container_name: format!("app-{i}"),
                    image: "app:1".into(),
                    node: None,
                });
            }
        }
        Snapshot {
            services: services.into_iter().map(std::sync::Arc::new).collect(),
            excluded: Vec::new(),
        }
    })
}

fn service(name: &str) -> Service {
    Service {
        name: ServiceName::parse(name).unwrap(),
        mode: Mode::Http,
        hosts: Vec::new(),
        path: None,
        listen: None,
        balance: Balance::Roundrobin,
        health: HealthCheck {
            path: None,
            interval_ms: 500,
        },
        https_redirect: false,
        acme: false,
        hold: None,
        servers: Vec::new(),
        slots: None,
        controls: Default::default(),
        canary: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Chained, so that a server's history (added while draining, say)
    /// counts: each step starts from what the commands before it left.
    #[test]
    fn applying_a_plan_gives_the_next_snapshots_servers(
        snapshots in prop::collection::vec(snapshot_strategy(), 2..5)
    ) {
        let mut table = loaded(&snapshots[0]);
        for pair in snapshots.windows(2) {
            match plan(&pair[0], &pair[1]) {
                Some(commands) => {
                    for command in &commands {
                        prop_assert_eq!(run(&mut table, command), Ok(()), "{}", command);
                    }
                }
                // A maxconn change: reloaded.
                None => table = loaded(&pair[1]),
            }
            prop_assert_eq!(seen(&table), wanted(&pair[1]));
        }
    }
}
