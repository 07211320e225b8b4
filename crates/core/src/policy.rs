//! When to renew and when to try again: pure functions of the inputs, no I/O, no clock.
//!
//! - [`plan_renewal`]: the moment a certificate version should be replaced — a uniformly
//!   random moment inside the CA's ARI window (RFC 9773 §4.2; now if the window has started),
//!   else the lifetime rule (renew when 1/3 of the lifetime is left, 1/2 under
//!   [`SHORT_LIFETIME`]) or the configured [`RenewBefore`], minus a deterministic
//!   per-certificate [`jitter`] so a fleet never renews in one burst.
//! - [`ari_refetch_after`]: when to ask for the ARI window again (Retry-After clamped to
//!   1 min .. 24 h; 6 h when absent).
//! - [`retry_after`]: the `Retry-After` header (RFC 9110 §10.2.3, seconds or HTTP date) as a
//!   time, clamped to [`MAX_RETRY_AFTER`].
//! - [`next_attempt`]: failure backoff — exponential from [`BACKOFF_FIRST`], settling at
//!   [`BACKOFF_CEILING`], never waiting past the point where fewer than
//!   [`MIN_ATTEMPTS_BEFORE_EXPIRY`] attempts fit before `not_after`, and never before the
//!   CA's Retry-After.
//!
//! Randomness is a parameter (`fraction` in `[0, 1)`), so every function is deterministic;
//! [`fraction_of`] derives a stable one from a hash.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::time::{DAY, UnixTime};

/// Lifetimes shorter than this renew at half their lifetime instead of at two thirds.
pub const SHORT_LIFETIME: i64 = 10 * DAY;
/// The jitter is at most this fraction of the lifetime ...
pub const JITTER_LIFETIME_DIVISOR: i64 = 20;
/// ... and at most this long.
pub const MAX_JITTER: i64 = 2 * DAY;
/// Longest wait honoured from a CA's Retry-After (for failures and ARI alike).
pub const MAX_RETRY_AFTER: i64 = DAY;
/// Shortest ARI re-fetch interval.
pub const ARI_MIN_REFETCH: i64 = 60;
/// ARI re-fetch interval when the CA gives no Retry-After.
pub const ARI_DEFAULT_REFETCH: i64 = 6 * 3600;
/// A version younger than this (or 1/20 of its lifetime, if shorter) is not replaced on an
/// ARI window alone: a CA answering "renew now" for every new certificate cannot make
/// certfleet order in a loop.
pub const ARI_MIN_VERSION_AGE: i64 = 3600;
/// First wait after a failure.
pub const BACKOFF_FIRST: i64 = 60;
/// Longest wait between attempts under persistent failure.
pub const BACKOFF_CEILING: i64 = 3600;
/// Shortest wait between attempts, even right before expiry.
pub const BACKOFF_FLOOR: i64 = 10;
/// Attempts that must still fit between now and `not_after` after a failure.
pub const MIN_ATTEMPTS_BEFORE_EXPIRY: i64 = 3;

/// `renew_before`: how long before expiry to renew, as a duration or a share of the lifetime.
/// Written and serialized as text: `7d`, `12h`, `30%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RenewBefore {
    /// Seconds before `not_after` (`7d`, `12h`, `90m`, `3600s`).
    Duration(i64),
    /// Percent of the lifetime left (`30%`), 1..=99.
    Percent(u8),
}

/// Why a `renew_before` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewBeforeError {
    /// Not a number with a unit or a percentage.
    #[error("{0:?} is not a duration (such as 7d, 12h, 90m, 3600s) or a percentage (such as 30%)")]
    Syntax(String),
    /// Below zero.
    #[error("{0:?} is negative; give how long before expiry to renew, such as 7d")]
    Negative(String),
    /// Zero: renewing at the moment of expiry is too late.
    #[error("{0:?} is zero; the certificate would expire before it is renewed")]
    Zero(String),
    /// A percentage over 100 (or of 100: renew at once, again and again).
    #[error("{0:?} is over 99%; the percentage is the share of the lifetime left at renewal")]
    PercentTooLarge(String),
    /// A duration at least as long as the lifetime: it would renew again at once.
    #[error(
        "{value} is not shorter than the certificate's lifetime of {lifetime}; it would renew \
         at once, again and again"
    )]
    LongerThanLifetime {
        /// The setting as written.
        value: String,
        /// The lifetime, as a duration.
        lifetime: String,
    },
}

impl FromStr for RenewBefore {
    type Err = RenewBeforeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        if t.starts_with('-') {
            return Err(RenewBeforeError::Negative(text.into()));
        }
        if let Some(p) = t.strip_suffix('%') {
            let value: u32 = p
                .trim()
                .parse()
                .map_err(|_| RenewBeforeError::Syntax(text.into()))?;
            return match value {
                0 => Err(RenewBeforeError::Zero(text.into())),
                1..=99 => Ok(RenewBefore::Percent(value as u8)),
                _ => Err(RenewBeforeError::PercentTooLarge(text.into())),
            };
        }
        let secs = parse_duration(t).ok_or_else(|| RenewBeforeError::Syntax(text.into()))?;
        if secs == 0 {
            return Err(RenewBeforeError::Zero(text.into()));
        }
        Ok(RenewBefore::Duration(secs))
    }
}

impl TryFrom<String> for RenewBefore {
    type Error = RenewBeforeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RenewBefore> for String {
    fn from(value: RenewBefore) -> Self {
        value.to_string()
    }
}

impl fmt::Display for RenewBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewBefore::Percent(p) => write!(f, "{p}%"),
            RenewBefore::Duration(secs) => f.write_str(&format_duration(*secs)),
        }
    }
}

impl RenewBefore {
    /// Refuse a duration that is not shorter than `lifetime` (seconds).
    pub fn check_lifetime(self, lifetime: i64) -> Result<Self, RenewBeforeError> {
        match self {
            RenewBefore::Duration(secs) if secs >= lifetime => {
                Err(RenewBeforeError::LongerThanLifetime {
                    value: self.to_string(),
                    // notAfter is inclusive (RFC 5280 §4.1.2.5): a 90-day certificate's
                    // notAfter - notBefore is 90 days less a second; show it as 90d.
                    lifetime: format_duration(if (lifetime + 1) % 60 == 0 {
                        lifetime + 1
                    } else {
                        lifetime
                    }),
                })
            }
            _ => Ok(self),
        }
    }
}

/// `7d`, `12h`, `90m`, `3600s` (or a plain number of seconds) as seconds.
fn parse_duration(t: &str) -> Option<i64> {
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 = number.parse().ok()?;
    let unit = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Seconds in the largest whole unit: `7d`, `36h`, `90m`, `45s`.
pub fn format_duration(secs: i64) -> String {
    for (unit, size) in [("d", DAY), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A version's validity, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// notBefore.
    pub not_before: UnixTime,
    /// notAfter.
    pub not_after: UnixTime,
}

impl Lifetime {
    /// Length in seconds (at least 1).
    pub fn secs(self) -> i64 {
        (self.not_after - self.not_before).max(1)
    }
}

/// A suggested renewal window from the CA (RFC 9773 §4.2), Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    /// Start of the window.
    pub start: UnixTime,
    /// End of the window.
    pub end: UnixTime,
}

/// Why an ARI window is not used (the lifetime rule applies instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// The end is not after the start (RFC 9773 §4.2 requires it).
    #[error("the window ends before it starts")]
    Inverted,
    /// The window reaches past the certificate's expiry: renewing there could be too late.
    #[error("the window ends after the certificate expires")]
    PastExpiry,
}

/// Check a window against the version it is for.
pub fn check_window(window: AriWindow, lifetime: Lifetime) -> Result<AriWindow, WindowError> {
    if window.end <= window.start {
        return Err(WindowError::Inverted);
    }
    if window.end > lifetime.not_after {
        return Err(WindowError::PastExpiry);
    }
    Ok(window)
}

/// What a renewal moment was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The CA's ARI window.
    Ari,
    /// 1/3 (or 1/2) of the lifetime left.
    Lifetime,
    /// The configured `renew_before`.
    RenewBefore,
    /// The current version was revoked (RFC 8555 §7.6): it must be replaced now.
    Revoked,
}

/// When to renew, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The moment (Unix seconds); in the past means now.
    pub at: UnixTime,
    /// What it is based on.
    pub basis: Basis,
    /// A setting that could not be used (say, `renew_before` longer than the lifetime).
    pub warning: Option<String>,
}

/// Everything [`plan_renewal`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct RenewalInputs<'a> {
    /// Stable per-certificate key for the jitter (its name or id).
    pub key: &'a str,
    /// The current version's validity.
    pub lifetime: Lifetime,
    /// The configured rule, if any.
    pub renew_before: Option<RenewBefore>,
    /// The CA's window for the current version, already checked with [`check_window`].
    pub ari: Option<AriWindow>,
    /// A uniform number in `[0, 1)` that places the moment inside the ARI window.
    pub ari_fraction: f64,
    /// The current time.
    pub now: UnixTime,
    /// Whether the current version was revoked: then it is due now, whatever the rest says.
    pub revoked: bool,
}

/// When the current version should be renewed.
///
/// A revoked version is due `now` ([`Basis::Revoked`]): a revoked certificate is refused by
/// clients that check, so no window, rule or jitter applies. With a usable ARI window: a
/// moment inside it (now once it has started). Otherwise the lifetime rule or `renew_before`,
/// minus [`jitter`]. With both an ARI window and `renew_before`, the earlier. Never before
/// the version is [`ARI_MIN_VERSION_AGE`] (or 1/20 of its lifetime, if shorter) old.
pub fn plan_renewal(inputs: RenewalInputs<'_>) -> Plan {
    if inputs.revoked {
        return Plan {
            at: inputs.now,
            basis: Basis::Revoked,
            warning: None,
        };
    }
    let life = inputs.lifetime;
    let jitter = jitter(inputs.key, life.secs());
    let (rule_at, rule_basis, warning) =
        match inputs.renew_before.map(|r| r.check_lifetime(life.secs())) {
            Some(Ok(rule)) => (
                life.not_after - before_expiry(rule, life),
                Basis::RenewBefore,
                None,
            ),
            Some(Err(e)) => (
                lifetime_rule(life),
                Basis::Lifetime,
                Some(format!("renew_before {e}; using the lifetime rule")),
            ),
            None => (lifetime_rule(life), Basis::Lifetime, None),
        };
    // Like an ARI window, a rule never replaces a version younger than the minimum age: a
    // `renew_before` close to the lifetime (`99%`, `3590s` of an hour) would otherwise make
    // every fresh version due at once and order in a loop.
    let min_age = ARI_MIN_VERSION_AGE.min(life.secs() / 20);
    let rule_at = (rule_at - jitter).max(life.not_before + min_age);
    let Some(window) = inputs.ari else {
        return Plan {
            at: rule_at,
            basis: rule_basis,
            warning,
        };
    };
    let ari_at = ari_moment(window, inputs.now, inputs.ari_fraction).max(life.not_before + min_age);
    if rule_basis == Basis::RenewBefore && rule_at < ari_at {
        return Plan {
            at: rule_at,
            basis: rule_basis,
            warning,
        };
    }
    Plan {
        at: ari_at,
        basis: Basis::Ari,
        warning,
    }
}

/// Seconds before `not_after` that `rule` asks for.
fn before_expiry(rule: RenewBefore, life: Lifetime) -> i64 {
    match rule {
        RenewBefore::Duration(secs) => secs,
        RenewBefore::Percent(p) => life.secs() * i64::from(p) / 100,
    }
}

/// Renew when 1/3 of the lifetime is left (1/2 for lifetimes under [`SHORT_LIFETIME`]).
pub fn lifetime_rule(life: Lifetime) -> UnixTime {
    let secs = life.secs();
    let left = if secs < SHORT_LIFETIME {
        secs / 2
    } else {
        secs / 3
    };
    life.not_after - left
}

/// A uniformly placed moment in `window`, or `now` once the window has started.
pub fn ari_moment(window: AriWindow, now: UnixTime, fraction: f64) -> UnixTime {
    if window.start <= now {
        return now;
    }
    let span = (window.end - window.start) as f64;
    window.start + (span * fraction.clamp(0.0, 1.0)) as i64
}

/// Deterministic per-certificate jitter in `[0, min(lifetime/20, 2 days))`, subtracted from
/// the lifetime rule.
pub fn jitter(key: &str, lifetime: i64) -> i64 {
    let max = (lifetime / JITTER_LIFETIME_DIVISOR).min(MAX_JITTER);
    if max <= 0 {
        return 0;
    }
    (fraction_of(&[key.as_bytes()]) * max as f64) as i64
}

/// A stable number in `[0, 1)` from the bytes given (FNV-1a 64).
pub fn fraction_of(parts: &[&[u8]]) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // Finalise (splitmix64) so nearby inputs spread over the whole range.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds until the ARI window should be fetched again: the CA's Retry-After (seconds from
/// now) clamped to [`ARI_MIN_REFETCH`] .. [`MAX_RETRY_AFTER`], [`ARI_DEFAULT_REFETCH`]
/// without one.
pub fn ari_refetch_after(retry_after: Option<i64>) -> i64 {
    retry_after.map_or(ARI_DEFAULT_REFETCH, |s| {
        s.clamp(ARI_MIN_REFETCH, MAX_RETRY_AFTER)
    })
}

/// A `Retry-After` value (delay-seconds or HTTP-date, RFC 9110 §10.2.3) as the time to wait
/// for, clamped to `now ..= now + MAX_RETRY_AFTER`; `None` when it does not parse.
pub fn retry_after(value: &str, now: UnixTime) -> Option<UnixTime> {
    let value = value.trim();
    let at = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still "a long time".
        now.saturating_add(value.parse::<i64>().unwrap_or(i64::MAX))
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        unix_of(date)
    };
    Some(at.clamp(now, now.saturating_add(MAX_RETRY_AFTER)))
}

fn unix_of(t: SystemTime) -> UnixTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Format `t` as an HTTP date (for tests and fault injection).
pub fn http_date(t: UnixTime) -> String {
    let secs = u64::try_from(t.max(0)).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// When to try again after the `streak`-th failure in a row (1 for the first).
///
/// Exponential from [`BACKOFF_FIRST`] up to [`BACKOFF_CEILING`], shortened by up to a fifth
/// by `fraction` so that certificates failing together spread out; never longer than a
/// [`MIN_ATTEMPTS_BEFORE_EXPIRY`]th of the time left before `not_after` (but at least
/// [`BACKOFF_FLOOR`]); never before the CA's `retry_after`.
pub fn next_attempt(
    streak: u32,
    now: UnixTime,
    not_after: Option<UnixTime>,
    retry_after: Option<UnixTime>,
    fraction: f64,
) -> UnixTime {
    let doublings = streak.saturating_sub(1).min(20);
    let base = (BACKOFF_FIRST << doublings).min(BACKOFF_CEILING);
    let mut wait = base - (base as f64 * 0.2 * fraction.clamp(0.0, 1.0)) as i64;
    if let Some(not_after) = not_after.filter(|na| *na > now) {
        let fits = (not_after - now) / MIN_ATTEMPTS_BEFORE_EXPIRY;
        wait = wait.min(fits.max(BACKOFF_FLOOR));
    }
    let at = now + wait.max(BACKOFF_FLOOR);
    retry_after.map_or(at, |ra| at.max(ra))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = 1_800_000_000;

    fn life(days: i64) -> Lifetime {
        Lifetime {
            not_before: T0,
            not_after: T0 + days * DAY,
        }
    }

    fn inputs(l: Lifetime, now: UnixTime) -> RenewalInputs<'static> {
        RenewalInputs {
            key: "www",
            lifetime: l,
            renew_before: None,
            ari: None,
            ari_fraction: 0.5,
            now,
            revoked: false,
        }
    }

    #[test]
    fn a_revoked_version_is_due_now_whatever_the_window_or_rule() {
        let l = life(90);
        let now = T0 + DAY;
        let mut i = inputs(l, now);
        i.revoked = true;
        assert_eq!(plan_renewal(i).at, now);
        assert_eq!(plan_renewal(i).basis, Basis::Revoked);
        i.ari = Some(AriWindow {
            start: T0 + 50 * DAY,
            end: T0 + 55 * DAY,
        });
        i.renew_before = Some(RenewBefore::Duration(DAY));
        assert_eq!(
            plan_renewal(i).at,
            now,
            "a far ARI window and renew_before do not delay it"
        );
        i.now = T0 + 10;
        assert_eq!(
            plan_renewal(i).at,
            T0 + 10,
            "nor does the minimum version age of the ARI rule"
        );
        i.revoked = false;
        assert!(
            plan_renewal(i).at > T0 + 49 * DAY,
            "not revoked: the window"
        );
    }

    #[test]
    fn lifetime_rule_for_6_days_90_days_and_5_years() {
        // 6 days: half the lifetime is left at renewal.
        assert_eq!(lifetime_rule(life(6)), T0 + 3 * DAY);
        // 90 days: a third is left.
        assert_eq!(lifetime_rule(life(90)), T0 + 60 * DAY);
        // 5 years: a third of 1826 days.
        let five = life(1826);
        assert_eq!(five.not_after - lifetime_rule(five), 1826 * DAY / 3);
        for days in [6, 90, 1826] {
            let l = life(days);
            let plan = plan_renewal(inputs(l, T0));
            let j = lifetime_rule(l) - plan.at;
            assert!(
                j >= 0 && j < (l.secs() / 20).min(MAX_JITTER),
                "{days}: jitter {j}"
            );
            assert_eq!(plan.basis, Basis::Lifetime);
        }
    }

    #[test]
    fn jitter_is_stable_per_name_and_spreads_a_fleet() {
        assert_eq!(jitter("www", 90 * DAY), jitter("www", 90 * DAY));
        let values: Vec<i64> = (0..200)
            .map(|i| jitter(&format!("c{i}"), 90 * DAY))
            .collect();
        let distinct: std::collections::BTreeSet<_> = values.iter().collect();
        assert!(distinct.len() > 190, "jitter spreads names");
        let max = values.iter().max().unwrap();
        assert!(*max > MAX_JITTER * 9 / 10 && *max < MAX_JITTER, "{max}");
    }

    #[test]
    fn renew_before_as_duration_and_percentage() {
        let l = life(90);
        let mut i = inputs(l, T0);
        i.renew_before = Some("7d".parse().unwrap());
        let plan = plan_renewal(i);
        assert_eq!(plan.basis, Basis::RenewBefore);
        assert!(plan.at <= l.not_after - 7 * DAY && plan.at > l.not_after - 9 * DAY);
        i.renew_before = Some("50%".parse().unwrap());
        assert!(plan_renewal(i).at <= T0 + 45 * DAY);
        i.renew_before = Some("100d".parse().unwrap());
        let plan = plan_renewal(i);
        assert_eq!(
            plan.basis,
            Basis::Lifetime,
            "too long: the lifetime rule applies"
        );
        assert!(plan.warning.unwrap().contains("lifetime of 90d"));
    }

    #[test]
    fn renew_before_close_to_the_lifetime_never_makes_a_fresh_version_due() {
        // A one-hour certificate with renew_before 3590s, and a five-year one with an hour
        // less than its lifetime: due no sooner than 1/20 of the lifetime (at most an hour)
        // after issuance.
        let hour = Lifetime {
            not_before: T0,
            not_after: T0 + 3600,
        };
        let mut i = inputs(hour, T0);
        i.renew_before = Some("3590s".parse().unwrap());
        let plan = plan_renewal(i);
        assert_eq!(plan.basis, Basis::RenewBefore);
        assert_eq!(plan.at, T0 + 180);
        let five_years = life(5 * 365);
        let mut i = inputs(five_years, T0);
        i.renew_before = Some("43799h".parse().unwrap());
        assert_eq!(plan_renewal(i).at, T0 + ARI_MIN_VERSION_AGE);
        // 99 % of a one-hour certificate: the jitter alone would put it before issuance.
        let mut i = inputs(hour, T0);
        i.renew_before = Some("99%".parse().unwrap());
        assert_eq!(plan_renewal(i).at, T0 + 180);
        // An ordinary setting is untouched by the floor.
        let mut i = inputs(five_years, T0);
        i.renew_before = Some("30%".parse().unwrap());
        assert!(plan_renewal(i).at > T0 + 365 * DAY);
    }

    #[test]
    fn renew_before_parsing() {
        assert_eq!("7d".parse(), Ok(RenewBefore::Duration(7 * DAY)));
        assert_eq!("12h".parse(), Ok(RenewBefore::Duration(12 * 3600)));
        assert_eq!("3600".parse(), Ok(RenewBefore::Duration(3600)));
        assert_eq!("30%".parse(), Ok(RenewBefore::Percent(30)));
        assert_eq!(RenewBefore::Duration(7 * DAY).to_string(), "7d");
        assert_eq!(RenewBefore::Duration(90 * 60).to_string(), "90m");
        use RenewBeforeError as E;
        assert!(matches!("-7d".parse::<RenewBefore>(), Err(E::Negative(_))));
        assert!(matches!(
            "150%".parse::<RenewBefore>(),
            Err(E::PercentTooLarge(_))
        ));
        assert!(matches!(
            "100%".parse::<RenewBefore>(),
            Err(E::PercentTooLarge(_))
        ));
        assert!(matches!("0d".parse::<RenewBefore>(), Err(E::Zero(_))));
        assert!(matches!("7 days".parse::<RenewBefore>(), Err(E::Syntax(_))));
        assert!(matches!("".parse::<RenewBefore>(), Err(E::Syntax(_))));
        let e = RenewBefore::Duration(100 * DAY)
            .check_lifetime(90 * DAY)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "100d is not shorter than the certificate's lifetime of 90d; it would renew at once, again and again"
        );
        // As a CA writes it: notAfter inclusive, a second short of 90 days.
        let e = RenewBefore::Duration(100 * DAY)
            .check_lifetime(90 * DAY - 1)
            .unwrap_err();
        assert!(e.to_string().contains("lifetime of 90d;"), "{e}");
    }

    #[test]
    fn ari_window_in_the_past_means_now() {
        let l = life(90);
        let mut i = inputs(l, T0 + 70 * DAY);
        i.ari = Some(AriWindow {
            start: T0 + 50 * DAY,
            end: T0 + 51 * DAY,
        });
        assert_eq!(plan_renewal(i).at, T0 + 70 * DAY);
        assert_eq!(plan_renewal(i).basis, Basis::Ari);
    }

    #[test]
    fn ari_window_in_the_future_is_sampled_uniformly() {
        let l = life(90);
        let window = AriWindow {
            start: T0 + 59 * DAY,
            end: T0 + 61 * DAY,
        };
        let mut i = inputs(l, T0 + DAY);
        i.ari = Some(window);
        for (fraction, want) in [
            (0.0, window.start),
            (0.5, T0 + 60 * DAY),
            (0.999_999, window.end - 1),
        ] {
            i.ari_fraction = fraction;
            assert_eq!(plan_renewal(i).at, want, "{fraction}");
        }
        // A fresh version is not replaced at once on a window that has started.
        let mut i = inputs(l, T0 + 60);
        i.ari = Some(AriWindow {
            start: T0 - DAY,
            end: T0 + DAY,
        });
        assert_eq!(plan_renewal(i).at, T0 + ARI_MIN_VERSION_AGE);
    }

    #[test]
    fn ari_window_far_in_the_future_or_malformed_falls_back() {
        let l = life(90);
        let far = AriWindow {
            start: T0 + 200 * DAY,
            end: T0 + 201 * DAY,
        };
        assert_eq!(check_window(far, l), Err(WindowError::PastExpiry));
        let inverted = AriWindow {
            start: T0 + 61 * DAY,
            end: T0 + 60 * DAY,
        };
        assert_eq!(check_window(inverted, l), Err(WindowError::Inverted));
        let fine = AriWindow {
            start: T0 + 60 * DAY,
            end: T0 + 61 * DAY,
        };
        assert_eq!(check_window(fine, l), Ok(fine));
    }

    #[test]
    fn ari_and_renew_before_take_the_earlier() {
        let l = life(90);
        let mut i = inputs(l, T0);
        i.ari = Some(AriWindow {
            start: T0 + 60 * DAY,
            end: T0 + 61 * DAY,
        });
        i.renew_before = Some(RenewBefore::Duration(45 * DAY));
        let plan = plan_renewal(i);
        assert_eq!(plan.basis, Basis::RenewBefore);
        assert!(plan.at <= T0 + 45 * DAY);
        i.renew_before = Some(RenewBefore::Duration(7 * DAY));
        assert_eq!(plan_renewal(i).basis, Basis::Ari);
    }

    #[test]
    fn ari_refetch_is_clamped() {
        assert_eq!(ari_refetch_after(None), 6 * 3600);
        assert_eq!(ari_refetch_after(Some(5)), 60);
        assert_eq!(ari_refetch_after(Some(-100)), 60);
        assert_eq!(ari_refetch_after(Some(7200)), 7200);
        assert_eq!(ari_refetch_after(Some(10 * DAY)), DAY);
    }

    #[test]
    fn retry_after_in_both_forms_and_absurd_values() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("120", now), Some(now + 120));
        assert_eq!(retry_after(" 0 ", now), Some(now));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 08:28:00 GMT", now),
            Some(now + 3600)
        );
        assert_eq!(http_date(now + 3600), "Wed, 21 Oct 2015 08:28:00 GMT");
        // A date in the past means now; absurd lengths are clamped to a day.
        assert_eq!(retry_after("Wed, 21 Oct 2015 06:28:00 GMT", now), Some(now));
        assert_eq!(retry_after("99999999999999999999999", now), Some(now + DAY));
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(now + DAY)
        );
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn backoff_grows_then_settles_near_an_hour() {
        let far = Some(T0 + 60 * DAY);
        let waits: Vec<i64> = (1..=10)
            .map(|s| next_attempt(s, T0, far, None, 0.0) - T0)
            .collect();
        assert_eq!(
            waits,
            [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
        );
        // The fraction only shortens, by at most a fifth.
        assert_eq!(next_attempt(10, T0, far, None, 0.999) - T0, 2881);
    }

    #[test]
    fn backoff_tightens_as_expiry_approaches() {
        // 30 minutes left: at most 10 minutes between attempts, so three still fit.
        let na = Some(T0 + 1800);
        assert_eq!(next_attempt(10, T0, na, None, 0.0), T0 + 600);
        // 45 seconds left: a third of it; 20 seconds left: the floor.
        assert_eq!(next_attempt(10, T0, Some(T0 + 45), None, 0.0), T0 + 15);
        assert_eq!(
            next_attempt(10, T0, Some(T0 + 20), None, 0.0),
            T0 + BACKOFF_FLOOR
        );
        // Expired: keep the ordinary schedule.
        assert_eq!(next_attempt(10, T0, Some(T0 - 5), None, 0.0), T0 + 3600);
    }

    #[test]
    fn backoff_honours_retry_after() {
        let ra = Some(T0 + 7200);
        assert_eq!(next_attempt(1, T0, Some(T0 + 60 * DAY), ra, 0.0), T0 + 7200);
        // Even near expiry: the CA would refuse earlier attempts anyway.
        assert_eq!(next_attempt(1, T0, Some(T0 + 1800), ra, 0.0), T0 + 7200);
    }

    #[test]
    fn fractions_are_uniform_enough() {
        let n = 10_000;
        let mut buckets = [0u32; 10];
        for i in 0..n {
            let f = fraction_of(&[format!("cert-{i}").as_bytes()]);
            assert!((0.0..1.0).contains(&f));
            buckets[(f * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }
}
