//! A fake CA for simulated time: issues instantly, answers ARI windows, and fails the way
//! real CAs do — connection resets, 503 and 429 with Retry-After, hangs, orders that go
//! invalid or time out at the CA (left to resume) — at random, plus outages. It keeps a log
//! of every call so the simulation can check what the engine did.
//!
//! It stands in for a CA only where a real one cannot run here: a year of time. The real
//! adapter (`AcmeIssuer`) is tested against Pebble.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certfleet_acme::error::{AcmeError, Problem};
use certfleet_acme::inspect::{CertInfo, ParsedChain};
use certfleet_acme::{Acme, Issued, OrderFailure, OrderObserver, OrderRequest, RenewalInfo};
use certfleet_core::Secret;
use certfleet_core::policy::AriWindow;
use certfleet_core::time::{Clock, DAY, UnixTime};

/// A small deterministic random number generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One certificate the fake CA issued.
#[derive(Debug, Clone)]
pub struct Cert {
    pub name: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub window: AriWindow,
    pub order: u64,
}

/// A call to `order`.
#[derive(Debug, Clone)]
pub struct OrderCall {
    pub name: String,
    pub at: UnixTime,
    pub resumed: Option<String>,
    /// The leaf PEM sent as `replaces`.
    pub replaces: Option<String>,
    pub outcome: Outcome,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Issued,
    Outage,
    Reset,
    Unavailable,
    RateLimited,
    Hung,
    Invalid,
    StillProcessing,
}

/// What the fake CA remembers.
#[derive(Default)]
pub struct Log {
    pub certs: HashMap<String, Cert>,
    pub issued: Vec<Cert>,
    pub calls: Vec<OrderCall>,
    pub orders_created: u64,
    /// Orders the CA still works on (created, not issued, not invalid), by URL.
    pub open_orders: HashMap<String, String>,
    pub ari_calls: u64,
    pub ari_failures: u64,
}

/// The fake CA.
pub struct FakeCa {
    clock: Arc<dyn Clock>,
    rng: Mutex<Rng>,
    /// Share of calls that fail.
    pub failure_rate: f64,
    /// `[start, end)` of an outage: every call fails.
    pub outage: (UnixTime, UnixTime),
    /// Lifetime of the certificates of a name.
    lifetime: Box<dyn Fn(&str) -> i64 + Send + Sync>,
    /// Retry-After of ARI answers, seconds.
    pub ari_retry_after: i64,
    /// Whether the CA answers renewalInfo for the certificates of a name (`Ok(None)`
    /// otherwise, as a CA without ARI does).
    pub ari_for: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub log: Mutex<Log>,
}

/// The ARI window the fake suggests: 60–65 % into the lifetime.
pub fn window_for(not_before: UnixTime, not_after: UnixTime) -> AriWindow {
    let life = not_after - not_before;
    AriWindow {
        start: not_before + life * 60 / 100,
        end: not_before + life * 65 / 100,
    }
}

fn problem(kind: &str, status: u16) -> AcmeError {
    AcmeError::Problem(Problem {
        kind: Some(format!("urn:ietf:params:acme:error:{kind}")),
        detail: Some(format!("fake CA: {kind}")),
        status: Some(status),
        subproblems: Vec::new(),
    })
}

impl FakeCa {
    pub fn new(
        clock: Arc<dyn Clock>,
        seed: u64,
        lifetime: impl Fn(&str) -> i64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            clock,
            rng: Mutex::new(Rng::new(seed)),
            failure_rate: 0.0,
            outage: (0, 0),
            lifetime: Box::new(lifetime),
            ari_retry_after: DAY,
            ari_for: Box::new(|_| true),
            log: Mutex::new(Log::default()),
        }
    }

    fn roll(&self) -> f64 {
        self.rng.lock().unwrap().next_f64()
    }

    fn in_outage(&self, now: UnixTime) -> bool {
        (self.outage.0..self.outage.1).contains(&now)
    }

    fn failure(
        error: AcmeError,
        retry_after: Option<UnixTime>,
        order_url: Option<String>,
    ) -> OrderFailure {
        OrderFailure {
            error,
            retry_after,
            order_url,
            abandoned: Vec::new(),
        }
    }

    fn issue(&self, name: &str, order: u64, now: UnixTime) -> (Cert, String) {
        let life = (self.lifetime)(name);
        let cert = Cert {
            name: name.to_string(),
            not_before: now,
            not_after: now + life,
            window: window_for(now, now + life),
            order,
        };
        let leaf = format!("fake-leaf:{name}:{order}");
        let mut log = self.log.lock().unwrap();
        log.certs.insert(leaf.clone(), cert.clone());
        log.issued.push(cert.clone());
        (cert, leaf)
    }
}

#[async_trait]
impl Acme for FakeCa {
    async fn profiles(&self) -> Result<Option<Vec<String>>, AcmeError> {
        Ok(None)
    }

    async fn renewal_info(&self, leaf_pem: &str) -> Result<Option<RenewalInfo>, AcmeError> {
        let now = self.clock.now();
        let failed = self.in_outage(now) || self.roll() < self.failure_rate;
        let mut log = self.log.lock().unwrap();
        log.ari_calls += 1;
        if failed {
            log.ari_failures += 1;
            return Err(AcmeError::Transport("fake CA: connection reset".into()));
        }
        let cert = log
            .certs
            .get(leaf_pem)
            .ok_or_else(|| AcmeError::BadResponse(format!("unknown certificate {leaf_pem}")))?;
        if !(self.ari_for)(&cert.name) {
            return Ok(None);
        }
        Ok(Some(RenewalInfo {
            window: cert.window,
            retry_after: Some(self.ari_retry_after),
            explanation_url: None,
        }))
    }

    async fn order(
        &self,
        request: &OrderRequest<'_>,
        _solvers: &certfleet_core::SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, OrderFailure> {
        let now = self.clock.now();
        let name = request.certificate.to_string();
        let mut call = OrderCall {
            name: name.clone(),
            at: now,
            resumed: request.resume.map(|r| r.order_url.to_string()),
            replaces: request.replaces.map(str::to_string),
            outcome: Outcome::Issued,
        };
        let outcome = if self.in_outage(now) {
            Outcome::Outage
        } else if self.roll() < self.failure_rate {
            match (self.roll() * 7.0) as u32 {
                0 => Outcome::Reset,
                1 => Outcome::Unavailable,
                2 => Outcome::RateLimited,
                3 => Outcome::Hung,
                4 => Outcome::Invalid,
                _ => Outcome::StillProcessing,
            }
        } else {
            Outcome::Issued
        };
        call.outcome = outcome;
        self.log.lock().unwrap().calls.push(call);
        let fail = |e, ra, url| Self::failure(e, ra, url);
        match outcome {
            Outcome::Outage => {
                return Err(fail(
                    AcmeError::Transport("fake CA: connection refused".into()),
                    None,
                    request.resume.map(|r| r.order_url.to_string()),
                ));
            }
            Outcome::Reset => {
                return Err(fail(
                    AcmeError::Transport("fake CA: connection reset".into()),
                    None,
                    request.resume.map(|r| r.order_url.to_string()),
                ));
            }
            Outcome::Unavailable => {
                return Err(fail(
                    problem("serverInternal", 503),
                    Some(now + 120),
                    request.resume.map(|r| r.order_url.to_string()),
                ));
            }
            Outcome::RateLimited => {
                return Err(fail(
                    problem("rateLimited", 429),
                    Some(now + 3600),
                    request.resume.map(|r| r.order_url.to_string()),
                ));
            }
            Outcome::Hung => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return Err(fail(
                    AcmeError::Transport("fake CA: no answer within 30 s".into()),
                    None,
                    request.resume.map(|r| r.order_url.to_string()),
                ));
            }
            _ => {}
        }
        // The order: the resumed one if the CA still works on it, else a new one.
        let resumable = {
            let log = self.log.lock().unwrap();
            request
                .resume
                .map(|r| r.order_url.to_string())
                .filter(|url| log.open_orders.contains_key(url))
        };
        let url = match resumable {
            Some(url) => url,
            None => {
                let url = {
                    let mut log = self.log.lock().unwrap();
                    log.orders_created += 1;
                    let url = format!("https://fake.test/order/{}", log.orders_created);
                    log.open_orders.insert(url.clone(), name.clone());
                    url
                };
                observer.order_created(&url).await;
                url
            }
        };
        let order: u64 = url.rsplit('/').next().unwrap().parse().unwrap();
        match outcome {
            Outcome::Invalid => {
                self.log.lock().unwrap().open_orders.remove(&url);
                return Err(fail(
                    AcmeError::Validation {
                        identifier: request.names[0].to_string(),
                        problem: Problem {
                            kind: Some("urn:ietf:params:acme:error:connection".into()),
                            detail: Some("fake CA: validation failed".into()),
                            status: Some(400),
                            subproblems: Vec::new(),
                        },
                    },
                    None,
                    None,
                ));
            }
            Outcome::StillProcessing => {
                // Finalized; the CA needs a while: resume after its Retry-After.
                let key = Secret::new(format!("fake-key:{order}"));
                if let Err(e) = observer.key_generated(&url, &key).await {
                    return Err(fail(AcmeError::Store(e), None, Some(url)));
                }
                return Err(fail(
                    AcmeError::NotYet {
                        order_url: url.clone(),
                        status: "processing".into(),
                        retry_at: now + 300,
                    },
                    Some(now + 300),
                    Some(url),
                ));
            }
            _ => {}
        }
        let key = match request.resume.and_then(|r| r.key_pem) {
            Some(key) if request.resume.map(|r| r.order_url) == Some(url.as_str()) => key.clone(),
            _ => {
                let key = Secret::new(format!("fake-key:{order}"));
                if let Err(e) = observer.key_generated(&url, &key).await {
                    return Err(fail(AcmeError::Store(e), None, Some(url)));
                }
                key
            }
        };
        self.log.lock().unwrap().open_orders.remove(&url);
        let (cert, leaf) = self.issue(&name, order, now);
        let info = CertInfo {
            serial: format!("{order:x}"),
            subject: String::new(),
            issuer: "CN=Fake CA".into(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            dns_names: request.names.iter().map(|n| n.to_string()).collect(),
            public_key: Vec::new(),
            key: "ecdsa-p256".into(),
            issuer_cn: Some("Fake CA".into()),
        };
        Ok(Issued {
            chain: ParsedChain {
                leaf_pem: leaf,
                chain_pem: String::new(),
                certs: vec![info],
            },
            key_pem: key,
            order_url: url,
            replaced: request.replaces.is_some(),
        })
    }
}

/// Half the fleet, of both lifetimes, gets ARI windows (`<kind><i>` with `i % 4 < 2`).
pub fn half_with_ari(name: &str) -> bool {
    let digits: String = name.chars().filter(char::is_ascii_digit).collect();
    digits.parse::<u64>().is_ok_and(|i| i % 4 < 2)
}

/// Lifetime by name: names starting with `short` live 6 days, others 90.
pub fn six_or_ninety_days(name: &str) -> i64 {
    if name.starts_with("short") {
        6 * DAY
    } else {
        90 * DAY
    }
}
