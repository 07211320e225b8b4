//! [`TokioClock`]: wall-clock time that advances with tokio's clock, so that a test can run
//! the renewal engine through a simulated year with `tokio::time::pause` (the engine reads
//! "now" only through [`Clock`] and sleeps only with `tokio::time`).

use certfleet_core::time::{Clock, UnixTime};
use tokio::time::Instant;

/// The Unix time at creation, advanced by tokio's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: UnixTime,
    started: Instant,
}

impl TokioClock {
    /// A clock that reads `origin` now.
    pub fn starting_at(origin: UnixTime) -> Self {
        Self {
            origin,
            started: Instant::now(),
        }
    }

    /// A clock that reads the system time now.
    pub fn system() -> Self {
        Self::starting_at(certfleet_core::time::now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> UnixTime {
        let elapsed = Instant::now().saturating_duration_since(self.started);
        self.origin + i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(clock.now(), 1_000);
        tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
        assert_eq!(clock.now(), 87_400);
    }
}
