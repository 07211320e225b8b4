//! The `rfc2136` provider: DNS UPDATE (RFC 2136) signed with TSIG (RFC 8945,
//! hmac-sha256/384/512), as BIND, Knot and PowerDNS accept it.
//!
//! Each record is added (§2.5.1) or deleted by name, type and value (§2.5.4) in one TCP
//! exchange with the primary server. The zone is configured or found by asking the same
//! server for the SOA of the record's name. A refusal names the server and the response code,
//! with the TSIG error when there is one (`NOTAUTH (TSIG BADSIG: ...)`).

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use super::wire::{self, fqdn, rcode_name, soa_owner, text};
use super::{DnsProvider, TxtRecord};
use crate::error::Error;

/// Default TTL of published records, seconds.
pub const DEFAULT_TTL: u32 = 60;
/// Allowed clock difference for TSIG (RFC 8945 §10 recommends 300 s).
pub const TSIG_FUDGE: u16 = 300;
/// Default bound on one exchange with the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an `rfc2136` provider.
#[derive(Clone)]
pub struct Rfc2136Settings {
    /// The primary server, `address:port`.
    pub server: SocketAddr,
    /// The zone to update; `None`: ask `server` for the SOA of each record's name.
    pub zone: Option<String>,
    /// TSIG key name, algorithm and secret; `None` sends unsigned updates.
    pub tsig: Option<Tsig>,
    /// TTL of published records.
    pub ttl: u32,
    /// Bound on one exchange.
    pub timeout: Duration,
}

/// A TSIG key.
#[derive(Clone)]
pub struct Tsig {
    /// Key name as the server knows it (`acme-key`).
    pub name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`.
    pub algorithm: String,
    /// The secret, base64 as `keymgr`/`tsig-keygen` print it.
    pub secret: certfleet_core::Secret,
}

impl std::fmt::Debug for Rfc2136Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Settings")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("tsig_key", &self.tsig.as_ref().map(|t| &t.name))
            .finish_non_exhaustive()
    }
}

/// Algorithms we sign with.
pub const TSIG_ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// Build the signer, with errors naming the fields under `prefix` (`solvers[1].`).
pub fn signer(prefix: &str, tsig: &Tsig) -> Result<TSigner, Error> {
    let algorithm = match tsig
        .algorithm
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .as_str()
    {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(Error::config(
                format!("{prefix}tsig_algorithm"),
                format!(
                    "{other:?} is not supported; use one of {}",
                    TSIG_ALGORITHMS.join(", ")
                ),
            ));
        }
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(tsig.secret.expose().trim())
        .map_err(|_| {
            Error::config(
                format!("{prefix}tsig_secret"),
                "is not base64 (as keymgr or tsig-keygen print it)",
            )
        })?;
    if key.is_empty() {
        return Err(Error::config(format!("{prefix}tsig_secret"), "is empty"));
    }
    let name = Name::from_ascii(&tsig.name).map_err(|e| {
        Error::config(
            format!("{prefix}tsig_key"),
            format!("{:?} is not a key name: {e}", tsig.name),
        )
    })?;
    TSigner::new(key, algorithm, name, TSIG_FUDGE)
        .map_err(|e| Error::config(format!("{prefix}tsig_algorithm"), e.to_string()))
}

/// The provider.
pub struct Rfc2136 {
    settings: Rfc2136Settings,
    signer: Option<TSigner>,
}

impl Rfc2136 {
    /// Check the settings (fields named under `prefix`) and build the provider.
    pub fn new(prefix: &str, settings: Rfc2136Settings) -> Result<Self, Error> {
        let signer = settings
            .tsig
            .as_ref()
            .map(|t| signer(prefix, t))
            .transpose()?;
        if let Some(zone) = &settings.zone {
            fqdn(zone).map_err(|_| {
                Error::config(
                    format!("{prefix}zone"),
                    format!("{zone:?} is not a DNS name"),
                )
            })?;
        }
        Ok(Self { settings, signer })
    }

    async fn zone_for(&self, name: &Name) -> Result<Name, Error> {
        if let Some(zone) = &self.settings.zone {
            return fqdn(zone);
        }
        let answer = wire::query(
            self.settings.server,
            name,
            RecordType::SOA,
            false,
            self.settings.timeout,
        )
        .await?;
        soa_owner(&answer).ok_or_else(|| Error::Dns {
            server: self.settings.server.to_string(),
            message: format!(
                "is not authoritative for {} (no SOA in its answer, {}); set `zone`",
                text(name),
                rcode_name(answer.metadata.response_code)
            ),
        })
    }

    async fn send(&self, record: &TxtRecord, delete: bool) -> Result<(), Error> {
        let name = fqdn(&record.name)?;
        let zone = self.zone_for(&name).await?;
        if !zone.zone_of(&name) {
            return Err(Error::config(
                "zone",
                format!("{} is not inside zone {}", record.name, text(&zone)),
            ));
        }
        let txt = RData::TXT(TXT::new(vec![record.value.clone()]));
        let mut rr = Record::from_rdata(name, self.settings.ttl, txt);
        if delete {
            rr.dns_class = DNSClass::NONE;
            rr.ttl = 0;
        }
        let mut msg = Message::new(0, MessageType::Query, OpCode::Update);
        msg.metadata.id = wire::random_id();
        let mut q = Query::new();
        q.set_name(zone)
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        msg.add_zone(q);
        msg.add_update(rr);
        let answer = wire::update(
            self.settings.server,
            msg,
            self.signer.as_ref(),
            self.settings.timeout,
        )
        .await?;
        let code = answer.metadata.response_code;
        if code == ResponseCode::NoError {
            tracing::debug!(server = %self.settings.server, name = %record.name, delete, "DNS update accepted");
            return Ok(());
        }
        Err(Error::UpdateRefused {
            server: self.settings.server.to_string(),
            name: record.name.clone(),
            rcode: rcode_name(code),
            detail: refusal_detail(&answer, self.signer.is_some()),
        })
    }
}

/// The TSIG error of a refusal, with what it usually means.
fn refusal_detail(answer: &Message, signed: bool) -> String {
    let tsig_error = answer.signature().and_then(|s| s.data.error);
    match tsig_error {
        Some(TsigError::BadSig) => " (TSIG BADSIG: the server does not accept our signature; check tsig_secret and tsig_algorithm)".into(),
        Some(TsigError::BadKey) => " (TSIG BADKEY: the server does not know this key name and algorithm; check tsig_key and tsig_algorithm)".into(),
        Some(TsigError::BadTime) => " (TSIG BADTIME: the clocks of this machine and the server differ by more than 300 s)".into(),
        Some(other) => format!(" (TSIG error {other:?})"),
        None if !signed && answer.metadata.response_code == ResponseCode::Refused => {
            " (the server may require a TSIG key: set tsig_key and tsig_secret)".into()
        }
        None if answer.metadata.response_code == ResponseCode::NotAuth => {
            " (the key is not allowed to update this zone, or the server is not authoritative for it)".into()
        }
        None => String::new(),
    }
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), Error> {
        self.send(record, false).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), Error> {
        self.send(record, true).await
    }
}
