//! Requests in flight on each server, as HAProxy's running worker counts
//! them: `show stat`'s current sessions (`scur`: in http mode, one per
//! request being answered; idle kept-alive connections to the server are
//! not sessions) plus the requests queued for it (`qcur`). `teal drain`
//! and `teal rollout` wait for 0 before a container may stop.

use std::collections::HashMap;

use super::HOLD_SERVER;

/// `show stat` limited to servers (every proxy, type 4, every server).
pub const COMMAND: &str = "show stat -1 4 -1";

/// (backend, server) -> requests in flight.
pub type InFlight = HashMap<(String, String), u64>;

/// Parses `show stat` CSV by its header (`# pxname,svname,qcur,...`); a
/// line without the columns is skipped.
pub fn parse_show_stat(answer: &str) -> InFlight {
    let mut lines = answer.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return InFlight::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(backend), Some(server), Some(queued), Some(current), Some(kind)) = (
        column("pxname"),
        column("svname"),
        column("qcur"),
        column("scur"),
        column("type"),
    ) else {
        return InFlight::new();
    };
    let mut in_flight = InFlight::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        // Type 2: a server (0 frontend, 1 backend, 3 listener).
        if field(kind) != "2" || field(server) == HOLD_SERVER {
            continue;
        }
        let count = |i: usize| field(i).parse::<u64>().unwrap_or(0);
        in_flight.insert(
            (field(backend).to_owned(), field(server).to_owned()),
            count(queued) + count(current),
        );
    }
    in_flight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sessions_and_queue_per_server_but_not_the_hold() {
        // HAProxy 2.6's columns, cut after `type`.
        let answer = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,\
            wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,\
            tracked,type,rate,\n\
            web,app-a-1,0,0,3,5,,9,0,0,,0,,0,0,0,0,UP,100,1,0,,,1,,,1,3,1,,0,,2,0,\n\
            web,app-b-2,2,2,1,1,,9,0,0,,0,,0,0,0,0,DRAIN,0,1,0,,,1,,,1,3,2,,0,,2,0,\n\
            web,teal_hold,0,0,7,7,,0,0,0,,0,,0,0,0,0,UP,1,0,1,,,1,,,1,3,3,,0,,2,0,\n\
            web,BACKEND,0,0,4,5,,9,0,0,,0,,0,0,0,0,UP,100,1,0,,,1,,,1,3,0,,0,,1,0,\n\
            garbage\n";
        let in_flight = parse_show_stat(answer);
        let get = |s: &str| in_flight.get(&("web".to_owned(), s.to_owned())).copied();
        assert_eq!((get("app-a-1"), get("app-b-2")), (Some(3), Some(3)));
        assert_eq!(get("teal_hold"), None);
        assert_eq!(in_flight.len(), 2);
        assert!(parse_show_stat("Unknown command").is_empty());
    }
}
