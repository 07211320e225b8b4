//! JSON shapes of the fleet routes (documented in `docs/api.md`); the agent protocol's own
//! messages are in `certfleet_core::fleet`.

use serde::{Deserialize, Serialize};

use crate::views::rfc3339;
use certfleet_core::TokenRecord;

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Unique name (for an agent: the agent's name).
    pub name: String,
    /// `admin`, `viewer` or `agent`.
    pub role: String,
    /// Label selector of an agent, such as `app=www`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenView {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Selector of an agent.
    pub selector: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Revocation time (RFC 3339).
    pub revoked_at: Option<String>,
    /// Last use (RFC 3339).
    pub last_seen: Option<String>,
}

impl TokenView {
    /// Build from the record.
    pub fn new(t: &TokenRecord) -> Self {
        Self {
            name: t.name.clone(),
            role: t.role.to_string(),
            selector: t.selector.as_ref().map(ToString::to_string),
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
            last_seen: t.last_seen.map(rfc3339),
        }
    }
}

/// The answer to `POST /api/v1/tokens`: the only time the token is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// What was stored.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// One certificate as an agent last reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentCertificateView {
    /// Certificate name.
    pub certificate: String,
    /// Deployed version.
    pub version: u32,
    /// Deployed serial.
    pub serial: String,
    /// Verified by handshake.
    pub verified: bool,
    /// Whether that serial is the certificate's current one and verified.
    pub in_sync: bool,
    /// Serial last served, when seen.
    pub served_serial: Option<String>,
    /// Last hook exit status.
    pub hook_status: Option<i32>,
    /// Last hook output (cut).
    pub hook_output: Option<String>,
    /// Why the deployment failed.
    pub error: Option<String>,
    /// Whether the previous files were put back.
    pub rolled_back: bool,
    /// When reported (RFC 3339).
    pub reported_at: String,
}

/// An agent (`GET /api/v1/agents`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentView {
    /// Name.
    pub name: String,
    /// Selector.
    pub selector: Option<String>,
    /// Whether its token was revoked.
    pub revoked: bool,
    /// Last request (RFC 3339).
    pub last_seen: Option<String>,
    /// Its clock minus the server's, milliseconds, from its last report.
    pub clock_offset_ms: Option<i64>,
    /// Whether it answers HTTP-01 challenges.
    pub serves_http01: bool,
    /// Certificates its selector matches.
    pub entitled: u32,
    /// Of those, how many it serves at their current serial, verified.
    pub in_sync: u32,
    /// Its last report per certificate.
    pub certificates: Vec<AgentCertificateView>,
}

/// `POST /api/v1/agent/confirm` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmed {
    /// Tokens recorded as confirmed.
    pub confirmed: Vec<String>,
}
