//! Requests HAProxy holds while their service has no ready server, as the
//! hold script (`haproxy/hold.lua`) counts them: `teal held` on the admin
//! socket, asked per request like the server states.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One backend's counts. All but `holding` are since the running HAProxy
/// worker started: a reload starts them again at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRequests {
    /// Waiting for a server now.
    pub holding: u64,
    /// Requests that waited (or are waiting).
    pub held: u64,
    /// Went to a server once one was ready.
    pub released: u64,
    /// Got the 503 once the hold bound passed.
    pub expired: u64,
    /// Got the 503 at once: the service already held the most it may.
    pub refused: u64,
    /// Handed to a new HAProxy worker by one stopping after a reload,
    /// where they wait on (and are counted again).
    #[serde(default)]
    pub handed: u64,
}

/// Backend name -> counts, from the answer to `teal held` (a `#` header,
/// then `backend holding held released expired refused handed` per line).
pub fn parse_held(answer: &str) -> HashMap<String, HeldRequests> {
    answer
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let backend = words.next()?.to_owned();
            let numbers: Vec<u64> = words.map(str::parse).collect::<Result<_, _>>().ok()?;
            let [holding, held, released, expired, refused, handed] = numbers[..] else {
                return None;
            };
            Some((
                backend,
                HeldRequests {
                    holding,
                    held,
                    released,
                    expired,
                    refused,
                    handed,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_answer_and_skips_what_it_does_not_know() {
        let answer =
            "# backend holding held released expired refused handed\nweb 2 10 7 1 4 3\nbad 1 x\napi 0 0 0 0 0 0\n\n";
        let held = parse_held(answer);
        assert_eq!(held.len(), 2);
        assert_eq!(
            held["web"],
            HeldRequests {
                holding: 2,
                held: 10,
                released: 7,
                expired: 1,
                refused: 4,
                handed: 3
            }
        );
        // An HAProxy without the script answers with an error: no counts.
        assert!(parse_held("Unknown command: 'teal'\n").is_empty());
    }
}
