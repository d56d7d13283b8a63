//! Live traffic from HAProxy's own counters: per-second rates between two
//! readings, of each backend (`show stat` of the backends, read every
//! second for the sparklines) and of each server (its counters in
//! `/status`).

use std::collections::HashMap;

use serde::Serialize;

use super::server_stats::StatCsv;
use super::{StatusReport, HOLD_SERVER};

/// `show stat` for backends only (type mask 2): one line per service.
pub const SHOW_BACKENDS: &str = "show stat -1 2 -1";

/// HAProxy's cumulative counters of one backend or server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// HTTP requests (a backend's `req_tot`, sessions in tcp mode; a
    /// server's `stot`).
    pub requests: u64,
    /// 5xx responses (`hrsp_5xx`): HAProxy's own 503s count on the backend.
    pub errors: u64,
    /// Requests in flight (`scur`, a server's queued ones too).
    pub sessions: u64,
    /// Average response time of the last 1024 requests, ms (`rtime`).
    pub response_ms: u64,
}

/// Each backend's counters, from the answer to [`SHOW_BACKENDS`]; empty
/// when HAProxy answered something else.
///
/// A request the hold releases comes back through its backend from the
/// hold's frontend, so HAProxy counts it there twice (and once on the
/// `teal_hold` server); here it counts once. One the hold answers 503
/// passes once.
pub fn backend_counters(answer: &str) -> HashMap<String, Counters> {
    let csv = StatCsv::parse(answer);
    let mut backends = HashMap::new();
    let mut held = HashMap::new();
    for [proxy, server, req_tot, stot, hrsp_5xx, scur, rtime] in
        csv.select(["pxname", "svname", "req_tot", "stot", "hrsp_5xx", "scur", "rtime"])
    {
        let number = |text: &str| text.parse::<u64>().ok();
        let counters = Counters {
            requests: number(req_tot).or(number(stot)).unwrap_or(0),
            errors: number(hrsp_5xx).unwrap_or(0),
            sessions: number(scur).unwrap_or(0),
            response_ms: number(rtime).unwrap_or(0),
        };
        match server {
            "BACKEND" => backends.insert(proxy.to_owned(), counters),
            HOLD_SERVER => held.insert(proxy.to_owned(), counters),
            _ => None,
        };
    }
    for (backend, hold) in held {
        if let Some(counters) = backends.get_mut(&backend) {
            let released = hold.requests.saturating_sub(hold.errors);
            counters.requests = counters.requests.saturating_sub(released);
        }
    }
    backends
}

/// Each server's counters as `/status` has them, by (service, server).
pub fn server_counters(report: &StatusReport) -> HashMap<(String, String), Counters> {
    report
        .services
        .iter()
        .flat_map(|service| service.servers.iter().map(move |server| (service, server)))
        .filter_map(|(service, server)| {
            let counters = server.counters?;
            Some((
                (service.name.clone(), server.name.clone()),
                Counters {
                    requests: counters.requests,
                    errors: counters.responses_5xx,
                    sessions: server.in_flight.unwrap_or(0),
                    response_ms: counters.response_time_ms,
                },
            ))
        })
        .collect()
}

/// What a backend or server is doing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub sessions: u64,
    pub response_ms: u64,
}

impl Traffic {
    /// From two readings `seconds` apart. A counter that went down was
    /// started again (a reload gives HAProxy a new worker, counting from 0),
    /// so all it counts now is new.
    pub fn between(before: &Counters, now: &Counters, seconds: f64) -> Self {
        let rate = |before: u64, now: u64| {
            let new = if now >= before { now - before } else { now };
            if seconds > 0.0 {
                new as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            requests_per_s: rate(before.requests, now.requests),
            errors_per_s: rate(before.errors, now.errors),
            sessions: now.sessions,
            response_ms: now.response_ms,
        }
    }
}

/// Rates of everything both readings have, by the same keys.
pub fn rates<K: std::hash::Hash + Eq + Clone>(
    before: &HashMap<K, Counters>,
    now: &HashMap<K, Counters>,
    seconds: f64,
) -> HashMap<K, Traffic> {
    now.iter()
        .filter_map(|(key, counters)| {
            let earlier = before.get(key)?;
            Some((key.clone(), Traffic::between(earlier, counters, seconds)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy 2.6's header, cut after `rtime` (the parser goes by name).
    const HEADER: &str = "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,\
wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,\
rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,\
hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,\
lastsess,last_chk,last_agt,qtime,ctime,rtime";

    /// A CSV line with these columns set and the others empty.
    fn line(set: &[(&str, &str)]) -> String {
        let cells: Vec<String> = HEADER
            .split(',')
            .map(|column| {
                set.iter()
                    .find(|(name, _)| *name == column)
                    .map_or_else(String::new, |(_, value)| value.to_string())
            })
            .collect();
        cells.join(",") + "\n"
    }

    #[test]
    fn reads_each_backend_counting_a_held_request_once() {
        let mut answer = format!("# {HEADER}\n");
        for (proxy, server, req_tot, stot, hrsp_5xx, scur, rtime) in [
            // 6 held: 5 released (and counted again by the backend), 1 answered 503.
            ("web", "teal_hold", "6", "6", "1", "0", "0"),
            ("web", "BACKEND", "46", "46", "3", "2", "7"),
            // tcp mode has no HTTP requests: its sessions count instead.
            ("db", "BACKEND", "", "12", "", "1", "2"),
        ] {
            answer += &line(&[
                ("pxname", proxy),
                ("svname", server),
                ("req_tot", req_tot),
                ("stot", stot),
                ("hrsp_5xx", hrsp_5xx),
                ("scur", scur),
                ("rtime", rtime),
            ]);
        }
        let backends = backend_counters(&answer);
        assert_eq!(
            backends["web"],
            Counters {
                requests: 41,
                errors: 3,
                sessions: 2,
                response_ms: 7
            }
        );
        assert_eq!(backends["db"].requests, 12);
        assert_eq!(backends.len(), 2);
        for answer in ["", "Unknown command.\n", "# nonsense\n1,2,3\n"] {
            assert!(backend_counters(answer).is_empty(), "{answer:?}");
        }
    }

    #[test]
    fn rates_are_per_second_and_survive_a_counter_reset() {
        let before = Counters {
            requests: 100,
            errors: 10,
            sessions: 4,
            response_ms: 3,
        };
        let now = Counters {
            requests: 300,
            errors: 14,
            sessions: 1,
            response_ms: 5,
        };
        let traffic = Traffic::between(&before, &now, 2.0);
        assert_eq!((traffic.requests_per_s, traffic.errors_per_s), (100.0, 2.0));
        assert_eq!((traffic.sessions, traffic.response_ms), (1, 5));
        // A reload: the new worker has counted 30 since it started.
        let reset = Counters { requests: 30, ..now };
        assert_eq!(Traffic::between(&now, &reset, 1.0).requests_per_s, 30.0);
        assert_eq!(Traffic::between(&before, &now, 0.0).requests_per_s, 0.0);
    }

    #[test]
    fn rates_need_both_readings() {
        let a = HashMap::from([("web", Counters::default())]);
        let b = HashMap::from([
            (
                "web",
                Counters {
                    requests: 5,
                    ..Counters::default()
                },
            ),
            ("new", Counters::default()),
        ]);
        let rates = rates(&a, &b, 1.0);
        assert_eq!(rates.len(), 1);
        assert_eq!(rates["web"].requests_per_s, 5.0);
    }
}
