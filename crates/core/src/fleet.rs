//! The fleet: API tokens with roles, agents (tokens of role `agent`), what agents report
//! about their deployments, and the messages of the agent protocol (DESIGN.md §2, §3 "Agent").
//!
//! An agent pulls [`AgentState`] (its entitled certificates and the HTTP-01 responses for their
//! names, with a [revision](AgentState::revision) to watch), fetches bundles, deploys, and
//! sends an [`AgentReport`] with one [`DeploymentReport`] per certificate. The server keeps the
//! latest report per agent and certificate as a [`DeploymentRecord`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::labels::Selector;
use crate::model::CertName;
use crate::time::UnixTime;

/// Longest hook output kept in a report (bytes); longer output is cut at a character boundary.
pub const MAX_HOOK_OUTPUT: usize = 2048;
/// Longest error message kept in a report (bytes).
pub const MAX_REPORT_ERROR: usize = 1024;

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including private keys and tokens.
    Admin,
    /// Read-only: certificates, issuers, events and agents; never key bytes.
    Viewer,
    /// An agent: its own state, the bundles of the certificates its selector matches, reports.
    Agent,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            other => Err(format!(
                "unknown role {other:?}; choose admin, viewer or agent"
            )),
        }
    }
}

/// Check a token (agent) name: the same rules as a certificate name.
pub fn check_token_name(name: &str) -> Result<(), String> {
    CertName::parse(name)
        .map(|_| ())
        .map_err(|_| {
            format!(
                "token name {name:?} is not valid: use 1 to 64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        })
}

/// A token about to be stored (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Unique name; for an agent, the agent's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Which certificates an agent receives (required for agents, absent otherwise).
    pub selector: Option<Selector>,
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: String,
}

/// A stored token (and, for role agent, the agent it identifies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Selector of an agent.
    pub selector: Option<Selector>,
    /// Creation time.
    pub created_at: UnixTime,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<UnixTime>,
    /// Last request made with it.
    pub last_seen: Option<UnixTime>,
    /// The agent's clock minus the server's, milliseconds, from its last report.
    pub clock_offset_ms: Option<i64>,
    /// Whether the agent said (in its last report) that it answers HTTP-01 challenges.
    pub serves_http01: bool,
}

impl TokenRecord {
    /// Whether this is a live (not revoked) agent token whose selector matches `labels`.
    pub fn entitled_to(&self, labels: &crate::labels::Labels) -> bool {
        self.role == Role::Agent
            && self.revoked_at.is_none()
            && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// What is recorded when an agent is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSeen {
    /// When.
    pub at: UnixTime,
    /// Clock offset measured from a report.
    pub clock_offset_ms: Option<i64>,
    /// Whether it answers HTTP-01 (from a report).
    pub serves_http01: Option<bool>,
}

/// What an agent says about one certificate after deploying (or failing to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentReport {
    /// Certificate name.
    pub certificate: String,
    /// Version whose files are in place.
    pub version: u32,
    /// Serial of those files, lowercase hex.
    pub serial: String,
    /// Whether a TLS handshake showed `serial` at every verify endpoint.
    pub verified: bool,
    /// The serial last seen in a handshake, when there was one.
    #[serde(default)]
    pub served_serial: Option<String>,
    /// Exit status of the last hook run (check or reload); `None` if none ran or it was killed.
    #[serde(default)]
    pub hook_status: Option<i32>,
    /// The hook's output, cut to [`MAX_HOOK_OUTPUT`] bytes.
    #[serde(default)]
    pub hook_output: Option<String>,
    /// Why the deployment failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Whether the previous files were put back after a failure.
    #[serde(default)]
    pub rolled_back: bool,
}

impl DeploymentReport {
    /// Cut the free-text fields to their limits (reports are untrusted input).
    pub fn bounded(mut self) -> Self {
        self.hook_output = self.hook_output.map(|s| truncate(s, MAX_HOOK_OUTPUT));
        self.error = self.error.map(|s| truncate(s, MAX_REPORT_ERROR));
        self
    }
}

/// The latest report of one agent about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Agent (token) name.
    pub agent: String,
    /// What it reported.
    #[serde(flatten)]
    pub report: DeploymentReport,
    /// When.
    pub reported_at: UnixTime,
}

/// Cut `text` to at most `max` bytes at a character boundary, marking the cut with `…`.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// `GET /api/v1/agent/state`: what an agent should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent's name.
    pub agent: String,
    /// Change counter; pass it back as `since` to wait for the next change.
    pub revision: u64,
    /// The server's clock, Unix milliseconds.
    pub server_time_ms: i64,
    /// Certificates the agent's selector matches, by name.
    pub certificates: Vec<AgentCertificate>,
    /// Live HTTP-01 responses for names of those certificates.
    pub challenges: Vec<AgentChallenge>,
}

/// One certificate an agent is entitled to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCertificate {
    /// Name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Current version, if issued.
    pub version: Option<u32>,
    /// Serial of the current version.
    pub serial: Option<String>,
    /// notAfter of the current version.
    pub not_after: Option<UnixTime>,
}

/// An HTTP-01 response an agent should serve (RFC 8555 §8.3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChallenge {
    /// The token (checked against `^[A-Za-z0-9_-]{16,128}$` by the agent too).
    pub token: String,
    /// The host the CA will ask for.
    pub host: String,
    /// The response body.
    pub key_authorization: String,
    /// The certificate being issued.
    pub certificate: String,
}

impl fmt::Debug for AgentChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentChallenge")
            .field("host", &self.host)
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/agent/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    /// The agent's clock when it sent the report, Unix milliseconds.
    pub agent_time_ms: i64,
    /// Whether the agent answers HTTP-01 challenges (local responder or webroot).
    #[serde(default)]
    pub serves_http01: bool,
    /// One entry per certificate reported on.
    #[serde(default)]
    pub certificates: Vec<DeploymentReport>,
}

/// `POST /api/v1/agent/confirm`: HTTP-01 tokens the agent checked it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeConfirmation {
    /// The tokens.
    pub tokens: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("abc".into(), 10), "abc");
        let cut = truncate("ééééé".into(), 6);
        assert!(cut.len() <= 6 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn roles_parse() {
        for r in [Role::Admin, Role::Viewer, Role::Agent] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("\"root\""));
    }

    #[test]
    fn challenge_debug_hides_key_authorization() {
        let c = AgentChallenge {
            token: "tok-0123456789abcdef".into(),
            host: "a.example".into(),
            key_authorization: "tok-0123456789abcdef.thumb".into(),
            certificate: "www".into(),
        };
        assert!(!format!("{c:?}").contains("thumb"));
    }
}
