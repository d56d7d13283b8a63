//! teal's one retry backoff: 250 ms, doubling up to 10 s, for as long as it
//! takes; back to 250 ms once things went well (a Docker session that
//! listed, an HAProxy that ran a while). The Docker watchers reconnect and
//! the supervisor restarts HAProxy with it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(10);

pub struct Backoff(<ExponentialBuilder as BackoffBuilder>::Backoff);

impl Backoff {
    pub fn new() -> Self {
        let delays = ExponentialBuilder::new()
            .with_min_delay(FIRST)
            .with_factor(2.0)
            .with_max_delay(MAX)
            .without_max_times()
            .build();
        Self(delays)
    }

    /// A session got going: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on the number of tries, the delays never run out.
        self.0.next().unwrap_or(MAX)
    }
}

/// Sleeps `delay`; `false` when `shutdown` came first.
pub async fn sleep(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_ten_seconds_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_shutdown() {
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        assert!(!sleep(Duration::from_secs(3600), &shutdown).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(sleep(Duration::from_millis(5), &CancellationToken::new()).await);
    }
}
