//! Each server as HAProxy's running worker counts it, from one `show stat`:
//! the requests in flight on it (`scur`: in http mode, one per request
//! being answered; idle kept-alive connections to the server are not
//! sessions; plus `qcur`, the ones queued for it), which `teal drain` and
//! `teal rollout` wait to see at 0, and its cumulative counters, from which
//! `teal rollout` and `teal switch` report what a deploy cost and a canary
//! decides.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::HOLD_SERVER;

/// `show stat` limited to servers (every proxy, type 4, every server).
pub const COMMAND: &str = "show stat -1 4 -1";

/// A server's counters since its HAProxy worker started (a reload starts
/// them again) or since it was added at runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Requests (in tcp mode, connections) sent to it: `stot`.
    pub requests: u64,
    /// 5xx responses it gave: `hrsp_5xx`.
    pub responses_5xx: u64,
    /// Connection attempts retried on it: `wretr`.
    pub retries: u64,
    /// Requests sent to another server after failing on it: `wredis`.
    pub redispatches: u64,
    /// Connections to it that failed: `econ`.
    pub connection_errors: u64,
    /// Responses from it that failed (aborted, timed out): `eresp`.
    pub response_errors: u64,
    /// Average response time over its last 1024 requests, ms: `rtime`.
    pub response_time_ms: u64,
    /// Longest response time seen, ms: `rtime_max`.
    pub response_time_max_ms: u64,
}

/// One server's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// Current sessions plus queued.
    pub in_flight: u64,
    pub counters: ServerCounters,
}

/// (backend, server) -> its line.
pub type Stats = HashMap<(String, String), ServerStats>;

/// Parses `show stat` CSV by its header (`# pxname,svname,qcur,...`); a
/// line without the columns is skipped, a missing counter is 0.
pub fn parse_show_stat(answer: &str) -> Stats {
    let csv = StatCsv::parse(answer);
    let columns = [
        "pxname",
        "svname",
        "type",
        "qcur",
        "scur",
        "stot",
        "hrsp_5xx",
        "wretr",
        "wredis",
        "econ",
        "eresp",
        "rtime",
        "rtime_max",
    ];
    let mut stats = Stats::new();
    for [backend, server, kind, numbers @ ..] in csv.select(columns) {
        // Type 2: a server (0 frontend, 1 backend, 3 listener).
        if kind != "2" || server == HOLD_SERVER {
            continue;
        }
        let [queued, current, requests, responses_5xx, retries, redispatches, connection_errors, response_errors, response_time_ms, response_time_max_ms] =
            numbers.map(|n| n.parse::<u64>().unwrap_or(0));
        stats.insert(
            (backend.to_owned(), server.to_owned()),
            ServerStats {
                in_flight: queued + current,
                counters: ServerCounters {
                    requests,
                    responses_5xx,
                    retries,
                    redispatches,
                    connection_errors,
                    response_errors,
                    response_time_ms,
                    response_time_max_ms,
                },
            },
        );
    }
    stats
}

/// `show stat`'s CSV, read as CSV: HAProxy quotes a field that holds a
/// comma (a check's description can), which splitting on commas would
/// take for two.
pub(super) struct StatCsv {
    columns: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl StatCsv {
    /// Empty when the answer is not `show stat`'s (an error, say).
    pub(super) fn parse(answer: &str) -> Self {
        let Some(text) = answer.strip_prefix("# ") else {
            return Self {
                columns: Vec::new(),
                rows: Vec::new(),
            };
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let columns = reader
            .headers()
            .map(|h| h.iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let rows = reader.records().flatten().collect();
        Self { columns, rows }
    }

    /// Each line's fields of these columns ("" where a line has none); no
    /// line at all unless the first two columns exist.
    pub(super) fn select<const N: usize>(&self, names: [&str; N]) -> impl Iterator<Item = [&str; N]> + '_ {
        let at = names.map(|name| self.columns.iter().position(|c| c == name));
        let known = at.iter().take(2).all(Option::is_some);
        self.rows
            .iter()
            .filter(move |_| known)
            .map(move |row| at.map(|i| i.and_then(|i| row.get(i)).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_server_but_not_the_hold() {
        // HAProxy 2.6's columns, cut after `rtime_max`'s neighbours.
        let answer = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,\
            wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,\
            tracked,type,rate,hrsp_5xx,rtime,rtime_max,\n\
            web,app-a-1,0,0,3,5,,9,0,0,,0,,1,2,3,4,UP,100,1,0,,,1,,,1,3,1,,0,,2,0,5,12,40,\n\
            web,app-b-2,2,2,1,1,,9,0,0,,0,,0,0,0,0,DRAIN,0,1,0,,,1,,,1,3,2,,0,,2,0,,,,\n\
            web,teal_hold,0,0,7,7,,0,0,0,,0,,0,0,0,0,UP,1,0,1,,,1,,,1,3,3,,0,,2,0,0,0,0,\n\
            web,BACKEND,0,0,4,5,,9,0,0,,0,,0,0,0,0,UP,100,1,0,,,1,,,1,3,0,,0,,1,0,0,0,0,\n\
            garbage\n";
        let stats = parse_show_stat(answer);
        let get = |s: &str| stats.get(&("web".to_owned(), s.to_owned())).copied();
        let a = get("app-a-1").unwrap();
        assert_eq!((a.in_flight, get("app-b-2").unwrap().in_flight), (3, 3));
        assert_eq!(
            a.counters,
            ServerCounters {
                requests: 9,
                responses_5xx: 5,
                retries: 3,
                redispatches: 4,
                connection_errors: 1,
                response_errors: 2,
                response_time_ms: 12,
                response_time_max_ms: 40,
            }
        );
        assert_eq!(get("app-b-2").unwrap().counters.responses_5xx, 0);
        assert_eq!(get("teal_hold"), None);
        assert_eq!(stats.len(), 2);
        assert!(parse_show_stat("Unknown command").is_empty());
    }

    #[test]
    fn a_quoted_field_with_a_comma_is_one_field() {
        let answer = "# pxname,svname,type,check_desc,stot,rtime\n\
            web,app-a-1,2,\"Layer7 wrong status, code 500\",9,12\n";
        let stats = parse_show_stat(answer);
        let a = stats[&("web".to_owned(), "app-a-1".to_owned())];
        assert_eq!((a.counters.requests, a.counters.response_time_ms), (9, 12));
    }
}
