//! Canary weights: the share of a service's traffic `teal rollout
//! --canary` gives its new containers, step by step.
//!
//! The choice is `<state-dir>/weights.json` ([`crate::state_file`]), per
//! service the deploy, the old containers' full ids and the new set's
//! percentage: `{"web": {"deploy": "3f2a1c", "old": ["3f2a..."],
//! "new_percent": 10}}`. Every other server of the service is the new set.
//! The old ids are known before any replacement exists, so the rollout
//! writes `new_percent: 0` first and a replacement is born with weight 0:
//! it gets no request before the first step, not even while HAProxy has it
//! UP before its first check.
//!
//! The daemon computes each server's weight from the share ([`weights`]) and
//! applies it like any weight: `set server BE/NAME weight N` through the
//! runtime API, no reload; a reload renders the same weights. So a restart of
//! teal mid-canary keeps them, and `/status` shows the share and each
//! server's weight. The rollout removes the entry when the canary ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::model::labels::ServiceName;
use crate::model::{Canary, HeaderName, Snapshot};
use crate::state_file::{self, Choice, StateFileError};

/// HAProxy's largest server weight: the weights are scaled to it, so the
/// rounding to whole numbers costs the least precision.
pub const MAX_WEIGHT: u16 = 256;

/// Service name -> its canary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CanaryWeights(BTreeMap<ServiceName, Canary>);

impl Choice for CanaryWeights {
    const FILE: &'static str = "weights.json";
    const WITHOUT_IT: &'static str = "every server goes back to its label weight, as when the canary ends";
    const ENTRY: &'static str =
        r#""SERVICE": {"deploy": ID, "old": [CONTAINER ID, ...], "new_percent": 0-100, "header": NAME (optional)}"#;

    type Entry = Canary;

    fn from_entries(entries: BTreeMap<String, Canary>) -> Result<Self, String> {
        if let Some((service, canary)) = entries.iter().find(|(_, c)| c.new_percent > 100) {
            return Err(format!(
                "service {service}: new_percent {} is over 100",
                canary.new_percent
            ));
        }
        state_file::by_service(entries).map(Self)
    }

    /// Each canary service's servers weighted so that the new set gets its
    /// share. Pure.
    fn route(&self, mut snapshot: Snapshot) -> Snapshot {
        for service in &mut snapshot.services {
            let Some(canary) = self.0.get(&service.name) else {
                continue;
            };
            let service = Arc::make_mut(service);
            let sides: Vec<(bool, u16)> = service.servers.iter().map(|s| (canary.is_new(s), s.weight)).collect();
            for (server, weight) in service.servers.iter_mut().zip(weights(&sides, canary.new_percent)) {
                server.weight = weight;
            }
            service.canary = Some(canary.clone());
        }
        snapshot
    }

    /// Only services with a canary are weighted.
    fn changes(&self, snapshot: &Snapshot) -> bool {
        snapshot.services.iter().any(|s| self.0.contains_key(&s.name))
    }

    fn log_edit(&self, before: &Self) {
        let names: std::collections::BTreeSet<&ServiceName> = before.0.keys().chain(self.0.keys()).collect();
        for service in names {
            match (before.0.get(service), self.0.get(service)) {
                (_, Some(now)) if before.0.get(service) != Some(now) => {
                    let header = now.header.as_ref().map(HeaderName::as_str);
                    tracing::info!(%service, deploy = %now.deploy, new_percent = now.new_percent, ?header, "canary weights");
                }
                (Some(_), None) => tracing::info!(%service, "canary over: label weights again"),
                _ => {}
            }
        }
    }
}

/// The weight of each server, given as (is new, its label weight), so that
/// the new ones get `new_percent` of the traffic and the old ones the rest,
/// each set split by the label weights. Scaled so the largest is
/// [`MAX_WEIGHT`]; a server with a share gets at least 1. Pure.
pub fn weights(servers: &[(bool, u16)], new_percent: u8) -> Vec<u16> {
    let percent = f64::from(new_percent.min(100));
    let total = |new: bool| -> f64 {
        servers
            .iter()
            .filter(|(n, _)| *n == new)
            .map(|(_, w)| f64::from(*w))
            .sum()
    };
    let (new_total, old_total) = (total(true), total(false));
    // A set with no weight at all has no share to give: the other takes it.
    let (new_share, old_share) = match (new_total > 0.0, old_total > 0.0) {
        (true, true) => (percent, 100.0 - percent),
        (true, false) => (100.0, 0.0),
        (false, _) => (0.0, 100.0),
    };
    let ideal: Vec<f64> = servers
        .iter()
        .map(|&(new, w)| {
            let (share, total) = if new {
                (new_share, new_total)
            } else {
                (old_share, old_total)
            };
            if total > 0.0 {
                share * f64::from(w) / total
            } else {
                0.0
            }
        })
        .collect();
    let largest = ideal.iter().copied().fold(0.0, f64::max);
    ideal
        .iter()
        .map(|&x| {
            if x <= 0.0 {
                0
            } else {
                ((x / largest * f64::from(MAX_WEIGHT)).round() as u16).clamp(1, MAX_WEIGHT)
            }
        })
        .collect()
}

impl CanaryWeights {
    pub fn load(state_dir: &Path) -> Result<Self, StateFileError> {
        state_file::load(state_dir)
    }

    pub fn of(&self, service: &ServiceName) -> Option<&Canary> {
        self.0.get(service)
    }
}

/// Sets `service`'s canary (`None`: ends it, label weights again).
pub fn store(state_dir: &Path, service: &ServiceName, canary: Option<Canary>) -> Result<(), StateFileError> {
    state_file::edit(state_dir, |all: &mut CanaryWeights| match canary {
        Some(canary) => {
            all.0.insert(service.clone(), canary);
        }
        None => {
            all.0.remove(service);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{facts, scope};
    use crate::model::{ContainerUpdate, Inventory};

    /// The new set's share of the total weight, in percent.
    fn new_share(servers: &[(bool, u16)], weights: &[u16]) -> f64 {
        let sum = |new: bool| -> f64 {
            servers
                .iter()
                .zip(weights)
                .filter(|((n, _), _)| *n == new)
                .map(|(_, w)| f64::from(*w))
                .sum()
        };
        100.0 * sum(true) / (sum(true) + sum(false))
    }

    #[test]
    fn the_new_set_gets_its_share_within_a_percent() {
        let layouts: [&[(bool, u16)]; 5] = [
            &[(false, 100), (true, 100)],
            &[(false, 100), (false, 100), (true, 100), (true, 100)],
            &[(false, 100), (false, 100), (false, 100), (true, 100)],
            &[(false, 50), (false, 150), (true, 100)],
            &[(false, 256), (true, 256), (true, 256)],
        ];
        for servers in layouts {
            for percent in [1, 5, 10, 25, 50, 90, 99] {
                let weights = weights(servers, percent);
                let share = new_share(servers, &weights);
                assert!(
                    (share - f64::from(percent)).abs() < 1.0,
                    "{servers:?} at {percent}%: {weights:?} gives {share:.2}%"
                );
                assert!(weights.iter().all(|w| (1..=MAX_WEIGHT).contains(w)), "{weights:?}");
                assert_eq!(weights.iter().max(), Some(&MAX_WEIGHT));
            }
        }
    }

    #[test]
    fn the_ends_and_the_label_weights() {
        let servers = [(false, 100), (true, 100), (true, 100)];
        assert_eq!(weights(&servers, 0), [256, 0, 0]);
        assert_eq!(weights(&servers, 100), [0, 256, 256]);
        // Within a set the label weights keep their ratio.
        assert_eq!(weights(&[(false, 100), (true, 50), (true, 100)], 50), [256, 85, 171]);
        // A label weight of 0 stays 0; a set with no weight leaves the share to the other.
        assert_eq!(weights(&[(false, 0), (true, 100)], 10), [0, 256]);
        assert_eq!(weights(&[(false, 100), (true, 0)], 10), [256, 0]);
        assert_eq!(weights(&[], 10), Vec::<u16>::new());
    }

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn routing_weights_the_canary_service_only() {
        let mut inventory = Inventory::default();
        for (c, service, address) in [
            ('a', "web", "10.0.0.2"),
            ('b', "web", "10.0.0.3"),
            ('c', "api", "10.0.0.4"),
        ] {
            inventory.apply(ContainerUpdate::Upsert(facts(&id(c), service, address)));
        }
        let snapshot = inventory.snapshot(&scope());
        let file = format!(
            r#"{{"web": {{"deploy": "abcdef", "old": ["{}"], "new_percent": 10}}}}"#,
            id('a')
        );
        let choice = CanaryWeights::parse(&file).unwrap();
        let routed = choice.route(snapshot.clone());
        let weight = |service: &str, c: char| {
            routed
                .services
                .iter()
                .find(|s| s.name.as_str() == service)
                .and_then(|s| s.servers.iter().find(|srv| srv.container_id.0 == id(c)))
                .map(|s| s.weight)
        };
        assert_eq!(
            (weight("web", 'a'), weight("web", 'b'), weight("api", 'c')),
            (Some(256), Some(28), Some(100))
        );
        let web = routed.services.iter().find(|s| s.name.as_str() == "web").unwrap();
        assert_eq!(web.canary.as_ref().map(|c| c.new_percent), Some(10));
        // Weights alone change no service: the runtime API applies them.
        assert!(snapshot.same_services(&routed));
        // A header rule names the new servers in the config: a reload.
        let file = format!(
            r#"{{"web": {{"deploy": "abcdef", "old": ["{}"], "new_percent": 10, "header": "X-Canary"}}}}"#,
            id('a')
        );
        let sticky = CanaryWeights::parse(&file).unwrap().route(snapshot.clone());
        assert!(!routed.same_services(&sticky));
        let web = sticky.services.iter().find(|s| s.name.as_str() == "web").unwrap();
        let new_name = web
            .servers
            .iter()
            .find(|s| s.container_id.0 == id('b'))
            .unwrap()
            .name
            .clone();
        assert_eq!(web.sticky_canary().map(|s| s.servers), Some(vec![new_name]));
    }

    #[test]
    fn the_file_holds_one_canary_per_service() {
        let dir = tempfile::tempdir().unwrap();
        let web = ServiceName::parse("web").unwrap();
        assert_eq!(CanaryWeights::load(dir.path()).unwrap(), CanaryWeights::default());
        let canary = Canary {
            deploy: "abcdef".into(),
            old: vec![id('a')],
            new_percent: 0,
            header: None,
        };
        store(dir.path(), &web, Some(canary.clone())).unwrap();
        store(
            dir.path(),
            &web,
            Some(Canary {
                new_percent: 50,
                ..canary
            }),
        )
        .unwrap();
        assert_eq!(
            CanaryWeights::load(dir.path()).unwrap().of(&web).map(|c| c.new_percent),
            Some(50)
        );
        store(dir.path(), &web, None).unwrap();
        assert_eq!(CanaryWeights::load(dir.path()).unwrap(), CanaryWeights::default());
        for bad in [
            "[]",
            r#"{"web": {"deploy": "x", "old": [], "new_percent": 101}}"#,
            r#"{"bad name": {"deploy": "x", "old": [], "new_percent": 1}}"#,
            r#"{"web": {"deploy": "x", "old": [], "new_percent": 1, "header": "X-Canary # on"}}"#,
        ] {
            assert!(CanaryWeights::parse(bad).is_err(), "{bad}");
        }
    }
}
