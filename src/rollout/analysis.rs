//! The judgement of a canary step, from what the new and the old servers
//! served in it (HAProxy's per-server counters, [`Traffic`]). Pure.
//!
//! - The error rate is the new servers' errors (5xx, connection and
//!   response errors) over their requests.
//! - The latency ratio is the new servers' average response time over the
//!   old servers' (HAProxy's average over each server's last 1024
//!   requests), each counted at least [`LATENCY_FLOOR_MS`].
//! - Nothing is judged on fewer than `--min-requests` requests to the new
//!   servers, with one exception: errors already too many for the rate to
//!   pass even at `--min-requests` fail the step at once.

use std::fmt;
use std::time::Duration;

use crate::deploy::Traffic;

/// Response times under this count as this: below it the difference
/// between two versions is scheduling noise (HAProxy counts whole ms).
pub const LATENCY_FLOOR_MS: u64 = 5;

/// What a canary step must stay within (`--max-error-rate`,
/// `--max-latency-ratio`, `--min-requests`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A fraction: 0.01 is 1 %.
    pub max_error_rate: f64,
    pub max_latency_ratio: Option<f64>,
    pub min_requests: u64,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Within the limits, on enough requests.
    Pass,
    /// Too few requests to tell yet (the new servers' count).
    TooFew(u64),
    Fail(Failure),
}

/// The measure a step failed on, with its numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    ErrorRate {
        errors: u64,
        requests: u64,
        max: f64,
    },
    LatencyRatio {
        new_ms: u64,
        old_ms: u64,
        max: f64,
    },
    /// The step was held as long as it may be without `min` requests.
    TooFewRequests {
        requests: u64,
        min: u64,
        waited: Duration,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::ErrorRate { errors, requests, max } => write!(
                f,
                "error rate {} ({errors} errors in {requests} requests to the new servers) is over --max-error-rate {}",
                percent(errors as f64 / requests.max(1) as f64),
                percent(max)
            ),
            Failure::LatencyRatio { new_ms, old_ms, max } => {
                let floored = if old_ms < LATENCY_FLOOR_MS {
                    format!(" (counted as {LATENCY_FLOOR_MS} ms)")
                } else {
                    String::new()
                };
                write!(
                    f,
                    "response time {new_ms} ms avg is {:.1} x the old servers' {old_ms} ms{floored}, over \
                     --max-latency-ratio {max}",
                    ratio(new_ms, old_ms)
                )
            }
            Failure::TooFewRequests { requests, min, waited } => write!(
                f,
                "only {requests} requests reached the new servers in {:.1}s, under --min-requests {min}: too little \
                 traffic to judge (pass a longer --step or a lower --min-requests)",
                waited.as_secs_f64()
            ),
        }
    }
}

/// `0.012` as `1.2%`.
pub fn percent(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if percent == percent.trunc() {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}

/// New over old, each at least [`LATENCY_FLOOR_MS`].
pub fn ratio(new_ms: u64, old_ms: u64) -> f64 {
    new_ms.max(LATENCY_FLOOR_MS) as f64 / old_ms.max(LATENCY_FLOOR_MS) as f64
}

/// Judges a step from what `old` and `new` served in it so far.
pub fn judge(old: &Traffic, new: &Traffic, limits: &Limits) -> Judgement {
    let errors = new.errors();
    let error_rate = |requests: u64| Failure::ErrorRate {
        errors,
        requests,
        max: limits.max_error_rate,
    };
    // Even if every request up to --min-requests succeeded, the rate would be over.
    if errors as f64 > limits.max_error_rate * new.requests.max(limits.min_requests) as f64 {
        return Judgement::Fail(error_rate(new.requests.max(errors)));
    }
    if new.requests < limits.min_requests || new.requests == 0 {
        return Judgement::TooFew(new.requests);
    }
    if let Some(max) = limits.max_latency_ratio {
        let (new_ms, old_ms) = (new.response_time_avg_ms, old.response_time_avg_ms);
        if ratio(new_ms, old_ms) > max {
            return Judgement::Fail(Failure::LatencyRatio { new_ms, old_ms, max });
        }
    }
    Judgement::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_error_rate: 0.01,
        max_latency_ratio: Some(2.0),
        min_requests: 100,
    };

    fn traffic(requests: u64, responses_5xx: u64, connection_errors: u64, avg_ms: u64) -> Traffic {
        Traffic {
            servers: 1,
            requests,
            responses_5xx,
            connection_errors,
            response_time_avg_ms: avg_ms,
            ..Traffic::default()
        }
    }

    #[test]
    fn verdicts_from_the_counters() {
        let old = traffic(1000, 0, 0, 3);
        let cases = [
            // (new: requests, 5xx, connection errors, avg ms) -> judgement
            ((0, 0, 0, 0), Judgement::TooFew(0)),
            ((99, 1, 0, 1), Judgement::TooFew(99)),
            ((100, 1, 0, 1), Judgement::Pass),
            ((200, 2, 0, 9), Judgement::Pass),
            // Two errors are over 1% of 100 already: no need to wait for the 100.
            (
                (10, 2, 0, 1),
                Judgement::Fail(Failure::ErrorRate {
                    errors: 2,
                    requests: 10,
                    max: 0.01,
                }),
            ),
            (
                (200, 1, 2, 1),
                Judgement::Fail(Failure::ErrorRate {
                    errors: 3,
                    requests: 200,
                    max: 0.01,
                }),
            ),
            // 11 ms is 2.2 x the floor of 5 ms the old 3 ms count as.
            (
                (100, 0, 0, 11),
                Judgement::Fail(Failure::LatencyRatio {
                    new_ms: 11,
                    old_ms: 3,
                    max: 2.0,
                }),
            ),
            // The latency is not judged on too few requests.
            ((50, 0, 0, 500), Judgement::TooFew(50)),
        ];
        for ((requests, e5xx, econ, ms), expected) in cases {
            let new = traffic(requests, e5xx, econ, ms);
            assert_eq!(judge(&old, &new, &LIMITS), expected, "{new:?}");
        }
        let without_ratio = Limits {
            max_latency_ratio: None,
            ..LIMITS
        };
        assert_eq!(judge(&old, &traffic(100, 0, 0, 900), &without_ratio), Judgement::Pass);
        let strict = Limits {
            max_error_rate: 0.0,
            ..LIMITS
        };
        assert!(matches!(judge(&old, &traffic(1, 1, 0, 1), &strict), Judgement::Fail(_)));
    }

    #[test]
    fn failures_say_the_measure_and_its_numbers() {
        let rate = Failure::ErrorRate {
            errors: 21,
            requests: 104,
            max: 0.01,
        };
        assert_eq!(
            rate.to_string(),
            "error rate 20.2% (21 errors in 104 requests to the new servers) is over --max-error-rate 1%"
        );
        let latency = Failure::LatencyRatio {
            new_ms: 52,
            old_ms: 0,
            max: 3.0,
        };
        assert_eq!(
            latency.to_string(),
            "response time 52 ms avg is 10.4 x the old servers' 0 ms (counted as 5 ms), over --max-latency-ratio 3"
        );
        let few = Failure::TooFewRequests {
            requests: 12,
            min: 100,
            waited: Duration::from_secs(10),
        };
        assert!(few
            .to_string()
            .starts_with("only 12 requests reached the new servers in 10.0s, under --min-requests 100"));
    }
}
