//! The scheduler inside `certfleet server`: wakes at the earliest due time, claims what is
//! due and hands it to [`Issuance`].
//!
//! Each pass claims at most as many due certificates as there are free order slots
//! (`Store::claim_due`, an indexed range on `next_due`, earliest first), starts an attempt for
//! each, then sleeps until the earliest `next_due` of all (`Store::next_due`, an index
//! lookup), at most [`MAX_IDLE`], or until an attempt ends or a certificate is declared. It is
//! the only thing in certfleet that sleeps for renewals, and it sleeps with `tokio::time`, so
//! a test can run it through simulated months.

use std::sync::Arc;
use std::time::Duration;

use certfleet_core::time::UnixTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::issuance::{CLAIM_LEASE, Issuance, Trigger};

/// Longest sleep without looking at the store (the clock may have been set, another
/// replica may have changed things).
pub const MAX_IDLE: Duration = Duration::from_secs(3600);
/// Pause after a store error before the next pass.
pub const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// What one scheduler pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Certificates claimed and started.
    pub started: usize,
    /// The earliest due time after the pass.
    pub next_due: Option<UnixTime>,
    /// Whether certificates are due but no order slot is free.
    pub saturated: bool,
}

/// Run the scheduler until `stopped` turns true.
///
/// Between passes it keeps the earliest due time it knows: the store's, lowered by what
/// finished attempts report ([`Issuance::poke_at`]), so an attempt that ends with a later
/// due time costs no store query; a pass runs when something is due or an order slot
/// frees up while due certificates wait.
pub fn spawn(issuance: Arc<Issuance>, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut known = match pass(&issuance).await {
                Ok(pass) => pass,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler pass failed");
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            loop {
                let wait = sleep_for(&known, issuance.clock.now());
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(wait) => break,
                    _ = issuance.changed() => {
                        if let Some(hint) = issuance.take_hint() {
                            known.next_due = Some(known.next_due.map_or(hint, |n| n.min(hint)));
                        }
                        if known.saturated {
                            break;
                        }
                    }
                }
            }
        }
    })
}

/// Claim and start what is due now; report when to look again.
pub async fn pass(issuance: &Arc<Issuance>) -> Result<Pass, certfleet_core::StoreError> {
    let store = issuance.store.clone();
    let now = issuance.clock.now();
    let free = issuance.free_slots();
    let mut started = 0;
    if free > 0 {
        let until = now + CLAIM_LEASE.as_secs() as i64;
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        for cert in store.claim_due(issuance.owner(), now, until, limit).await? {
            if issuance.spawn(cert, Trigger::Scheduled) {
                started += 1;
            }
        }
    }
    let next_due = store.next_due().await?;
    let saturated = next_due.is_some_and(|t| t <= now) && issuance.free_slots() == 0;
    Ok(Pass {
        started,
        next_due,
        saturated,
    })
}

/// How long to sleep after `pass` (an attempt ending wakes the scheduler earlier).
fn sleep_for(pass: &Pass, now: UnixTime) -> Duration {
    match pass.next_due {
        _ if pass.saturated => MAX_IDLE,
        Some(due) if due <= now => Duration::ZERO,
        Some(due) => Duration::from_secs(u64::try_from(due - now).unwrap_or(0)).min(MAX_IDLE),
        None => MAX_IDLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_earliest_due_time() {
        let pass = |next_due, saturated| Pass {
            started: 0,
            next_due,
            saturated,
        };
        assert_eq!(
            sleep_for(&pass(Some(1_060), false), 1_000),
            Duration::from_secs(60)
        );
        assert_eq!(sleep_for(&pass(Some(900), false), 1_000), Duration::ZERO);
        assert_eq!(sleep_for(&pass(Some(1_000_000), false), 1_000), MAX_IDLE);
        assert_eq!(sleep_for(&pass(None, false), 1_000), MAX_IDLE);
        assert_eq!(
            sleep_for(&pass(Some(900), true), 1_000),
            MAX_IDLE,
            "saturated: an attempt ending wakes it"
        );
    }
}
