//! Time as certfleet stores it: seconds since the Unix epoch, UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// The current time.
pub fn now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where "now" comes from: the system clock in production, simulated time in tests (the
/// renewal engine reads the time only through this).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        now()
    }
}

/// Whole days from `now` until `not_after`, rounded down; negative once expired.
pub fn days_left(not_after: UnixTime, now: UnixTime) -> i64 {
    (not_after - now).div_euclid(DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_rounds_down() {
        assert_eq!(days_left(10 * DAY, 0), 10);
        assert_eq!(days_left(10 * DAY - 1, 0), 9);
        assert_eq!(days_left(0, 1), -1);
    }
}
