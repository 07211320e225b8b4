//! [`AcmeError`]: everything that can go wrong while talking to a CA.

use std::fmt;

/// RFC 8555 §6.7 problem type prefix.
const ACME_ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";

/// A problem document from the CA (RFC 7807 / RFC 8555 §6.7), kept typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The problem type URN, if any.
    pub kind: Option<String>,
    /// The CA's explanation.
    pub detail: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Per-identifier detail: (identifier, type, detail).
    pub subproblems: Vec<(String, Option<String>, Option<String>)>,
}

impl Problem {
    /// The short type (`badNonce`, `rateLimited`, ...) without the URN prefix.
    pub fn short_type(&self) -> Option<&str> {
        self.kind
            .as_deref()
            .map(|t| t.strip_prefix(ACME_ERROR_PREFIX).unwrap_or(t))
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.short_type(),
            Some("badNonce" | "rateLimited" | "serverInternal" | "connection" | "dns")
        ) || self.status.is_some_and(|s| s >= 500)
    }
}

impl From<instant_acme::Problem> for Problem {
    fn from(p: instant_acme::Problem) -> Self {
        Self {
            kind: p.r#type,
            detail: p.detail,
            status: p.status,
            subproblems: p
                .subproblems
                .into_iter()
                .map(|s| {
                    let id = s.identifier.map(|i| format!("{i:?}")).unwrap_or_default();
                    (id, s.r#type, s.detail)
                })
                .collect(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short_type().unwrap_or("problem"))?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        for (id, kind, detail) in &self.subproblems {
            write!(
                f,
                "; {id}: {} {}",
                kind.as_deref().unwrap_or(""),
                detail.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// A failure while issuing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The directory URL could not be reached (refused, DNS, TLS, timeout).
    #[error("ACME directory {url} did not answer: {reason}")]
    Unreachable {
        /// Directory URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The URL answered, but not with an ACME directory.
    #[error("{url} is not an ACME directory: {reason}")]
    NotAcme {
        /// Directory URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CA refused a request with a problem document.
    #[error("CA refused the request: {0}")]
    Problem(Problem),
    /// A challenge failed validation at the CA.
    #[error("validation failed for {identifier}: {problem}")]
    Validation {
        /// The identifier.
        identifier: String,
        /// The CA's problem.
        problem: Problem,
    },
    /// The CA does not offer the challenge type we need.
    #[error("the CA offers no {kind} challenge for {identifier}")]
    ChallengeUnavailable {
        /// Challenge type.
        kind: String,
        /// Identifier.
        identifier: String,
    },
    /// The CA sent something we refuse to use (bad token, mismatched certificate, bad PEM).
    #[error("the CA sent an unusable response: {0}")]
    BadResponse(String),
    /// Publishing or withdrawing a challenge response failed.
    #[error(transparent)]
    Solver(#[from] certfleet_core::SolverError),
    /// The order did not progress in time.
    #[error("timed out waiting for the CA: {0}")]
    Timeout(String),
    /// Storing or loading the account failed.
    #[error(transparent)]
    Store(#[from] certfleet_core::StoreError),
    /// Key generation or CSR construction failed.
    #[error("key or CSR: {0}")]
    Key(String),
    /// A configuration problem (bad root file, unsupported option).
    #[error("issuer configuration: {0}")]
    Config(String),
    /// Certificate material a person imports was refused; `field` names the piece
    /// (`cert_pem`, `key_pem`, `chain_pem`, `ca_pem`), `message` what is wrong with it.
    #[error("{field}: {message}")]
    Material {
        /// The piece.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Transport failure in the middle of an order.
    #[error("talking to the CA failed: {0}")]
    Transport(String),
    /// The CA does not know (or no longer accepts) the account the request was signed with.
    #[error("the CA no longer accepts ACME account {account}: {problem}")]
    AccountGone {
        /// The account URL.
        account: String,
        /// The CA's problem.
        problem: Problem,
    },
    /// The CA is still working on the order and asks not to be polled before `retry_at`,
    /// which is past the order timeout: the order is left at the CA to be resumed then.
    #[error(
        "order {order_url} is still {status} at the CA, which asks to come back at {retry_at} (Unix time)"
    )]
    NotYet {
        /// The order URL.
        order_url: String,
        /// Its status (`processing`, `pending`, `ready`).
        status: String,
        /// When the CA asks to be asked again (Unix seconds).
        retry_at: i64,
    },
}

impl AcmeError {
    /// Whether the same attempt may succeed if repeated soon (used for badNonce, 5xx, resets).
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::Problem(p) => p.is_retryable(),
            AcmeError::Transport(_) | AcmeError::Timeout(_) | AcmeError::NotYet { .. } => true,
            _ => false,
        }
    }

    /// Whether this is a badNonce the CA kept returning (RFC 8555 §6.5).
    pub fn is_bad_nonce(&self) -> bool {
        matches!(self, AcmeError::Problem(p) if p.short_type() == Some("badNonce"))
    }
}

impl From<instant_acme::Error> for AcmeError {
    fn from(err: instant_acme::Error) -> Self {
        use instant_acme::Error as E;
        match err {
            E::Api(p) => AcmeError::Problem(p.into()),
            E::Timeout(_) => AcmeError::Timeout("order did not reach the expected state".into()),
            E::Json(e) => AcmeError::BadResponse(format!("invalid JSON: {e}")),
            E::Crypto | E::KeyRejected => AcmeError::Key(err.to_string()),
            E::Unsupported(what) => AcmeError::Config(format!("the CA does not support {what}")),
            other => AcmeError::Transport(error_chain(&other)),
        }
    }
}

pub use certfleet_core::text::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_types() {
        let p = Problem {
            kind: Some("urn:ietf:params:acme:error:badNonce".into()),
            detail: Some("JWS has an invalid anti-replay nonce".into()),
            status: Some(400),
            subproblems: vec![],
        };
        assert_eq!(p.short_type(), Some("badNonce"));
        assert!(p.is_retryable());
        assert!(AcmeError::Problem(p).is_bad_nonce());
        let unauthorized = Problem {
            kind: Some("urn:ietf:params:acme:error:unauthorized".into()),
            detail: None,
            status: Some(403),
            subproblems: vec![],
        };
        assert!(!unauthorized.is_retryable());
    }
}
