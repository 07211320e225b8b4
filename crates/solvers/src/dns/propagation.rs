//! The propagation check: poll every authoritative server of a record's zone until each one
//! returns the value, so the CA is told "ready" only when any of them can answer.
//!
//! Which servers: the configured `nameservers` (authoritative servers to ask directly, as
//! `address:port`), or else discovered through the configured `resolvers` (recursive, by
//! default those of `/etc/resolv.conf`): the zone is the owner of the SOA record found for the
//! name, its servers the NS records of the zone, their addresses looked up through the same
//! resolvers, asked on `authoritative_port` (53). A CNAME at `_acme-challenge` is followed
//! (RFC 8555 §8.4 lets a name delegate its challenge) up to [`MAX_CNAME_HOPS`] hops.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use super::wire::{self, cname_target, fqdn, soa_owner, text, txt_values};
use crate::error::Error;

/// Longest CNAME chain followed from `_acme-challenge`.
pub const MAX_CNAME_HOPS: usize = 8;
/// Default time between polls.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default bound on waiting for every server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default bound on one query.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Port of authoritative servers found by discovery.
pub const DEFAULT_AUTHORITATIVE_PORT: u16 = 53;

/// Where and how long to look.
#[derive(Debug, Clone)]
pub struct PropagationSettings {
    /// Authoritative servers to ask directly; empty: discover them through `resolvers`.
    pub nameservers: Vec<SocketAddr>,
    /// Recursive resolvers for discovery and CNAME lookups; empty: `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    /// Port to ask discovered authoritative servers on.
    pub authoritative_port: u16,
    /// Time between polls.
    pub interval: Duration,
    /// Bound on the whole wait.
    pub timeout: Duration,
    /// Bound on one query.
    pub query_timeout: Duration,
    /// Skip the check entirely (trust the provider).
    pub disabled: bool,
}

impl Default for PropagationSettings {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            resolvers: Vec::new(),
            authoritative_port: DEFAULT_AUTHORITATIVE_PORT,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            disabled: false,
        }
    }
}

/// The check, with its settings.
#[derive(Debug, Clone)]
pub struct Propagation {
    settings: PropagationSettings,
}

/// The nameservers listed in `/etc/resolv.conf` (port 53).
pub fn system_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Propagation {
    /// A check with these settings.
    pub fn new(settings: PropagationSettings) -> Self {
        Self { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &PropagationSettings {
        &self.settings
    }

    /// Servers for lookups that need recursion (discovery, CNAME): the resolvers, else the
    /// configured nameservers, else the system's resolvers.
    fn lookup_servers(&self) -> (Vec<SocketAddr>, bool) {
        if !self.settings.resolvers.is_empty() {
            return (self.settings.resolvers.clone(), true);
        }
        if !self.settings.nameservers.is_empty() {
            return (self.settings.nameservers.clone(), false);
        }
        (system_resolvers(), true)
    }

    /// Ask the lookup servers in turn; the first answer (any response code but SERVFAIL and
    /// REFUSED) wins.
    async fn lookup(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> Result<hickory_proto::op::Message, Error> {
        let (servers, recursion) = self.lookup_servers();
        let mut last = Error::Dns {
            server: "none".into(),
            message: "no resolver is configured and /etc/resolv.conf lists none".into(),
        };
        for server in servers {
            match wire::query(server, name, rtype, recursion, self.settings.query_timeout).await {
                Ok(m)
                    if !matches!(
                        m.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    return Ok(m);
                }
                Ok(m) => {
                    last = Error::Dns {
                        server: server.to_string(),
                        message: format!(
                            "answered {} for {name} {rtype}",
                            wire::rcode_name(m.metadata.response_code)
                        ),
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Where `name` leads after following CNAME records (lowercase, no final dot). A target
    /// the lookup servers refuse to answer for (configured authoritative servers of another
    /// zone) ends the chain there.
    pub async fn follow_cname(&self, name: &str) -> Result<String, Error> {
        let mut current = fqdn(name)?;
        for hop in 0..MAX_CNAME_HOPS {
            let answer = match self.lookup(&current, RecordType::CNAME).await {
                Ok(a) => a,
                Err(_) if hop > 0 => return Ok(text(&current)),
                Err(e) => return Err(e),
            };
            match cname_target(&answer, &current) {
                Some(target) => current = target,
                None => return Ok(text(&current)),
            }
        }
        Err(Error::Dns {
            server: "resolver".into(),
            message: format!("more than {MAX_CNAME_HOPS} CNAME hops from {name}"),
        })
    }

    /// The authoritative servers to poll for `name`.
    pub async fn authoritative_servers(&self, name: &str) -> Result<Vec<SocketAddr>, Error> {
        if !self.settings.nameservers.is_empty() {
            return Ok(self.settings.nameservers.clone());
        }
        let owner = fqdn(name)?;
        let answer = self.lookup(&owner, RecordType::SOA).await?;
        let zone = soa_owner(&answer).ok_or_else(|| Error::Dns {
            server: "resolver".into(),
            message: format!("no SOA record found for {name}, so its zone is unknown"),
        })?;
        let ns = self.lookup(&zone, RecordType::NS).await?;
        let hosts: BTreeSet<Name> = ns
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(n.0.clone()),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for host in hosts {
            for rtype in [RecordType::A, RecordType::AAAA] {
                let Ok(answer) = self.lookup(&host, rtype).await else {
                    continue;
                };
                out.extend(answer.answers.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(SocketAddr::new(
                        IpAddr::V4(a.0),
                        self.settings.authoritative_port,
                    )),
                    RData::AAAA(a) => Some(SocketAddr::new(
                        IpAddr::V6(a.0),
                        self.settings.authoritative_port,
                    )),
                    _ => None,
                }));
            }
        }
        if out.is_empty() {
            return Err(Error::Dns {
                server: "resolver".into(),
                message: format!(
                    "no address found for the name servers of zone {}",
                    text(&zone)
                ),
            });
        }
        Ok(out)
    }

    /// Wait until every authoritative server returns each `(name, value)`; the error names
    /// the servers that never did.
    pub async fn wait_visible(&self, records: &[(String, String)]) -> Result<(), Error> {
        if self.settings.disabled {
            return Ok(());
        }
        let started = Instant::now();
        for (name, value) in records {
            let servers = self.authoritative_servers(name).await?;
            let owner = fqdn(name)?;
            let mut pending: Vec<SocketAddr> = servers.clone();
            loop {
                let mut still = Vec::new();
                for server in pending {
                    let seen = wire::query(
                        server,
                        &owner,
                        RecordType::TXT,
                        false,
                        self.settings.query_timeout,
                    )
                    .await
                    .map(|m| txt_values(&m, &owner).iter().any(|v| v == value))
                    .unwrap_or(false);
                    if !seen {
                        still.push(server);
                    }
                }
                if still.is_empty() {
                    tracing::debug!(%name, servers = servers.len(), "TXT record visible on every authoritative server");
                    break;
                }
                if started.elapsed() >= self.settings.timeout {
                    let join = |v: &[SocketAddr]| {
                        if v.is_empty() {
                            "none".to_string()
                        } else {
                            v.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    };
                    let visible: Vec<SocketAddr> = servers
                        .iter()
                        .filter(|s| !still.contains(s))
                        .copied()
                        .collect();
                    return Err(Error::NotPropagated {
                        name: name.clone(),
                        lagging: join(&still),
                        visible: join(&visible),
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                pending = still;
                tokio::time::sleep(self.settings.interval).await;
            }
        }
        Ok(())
    }
}
