//! Challenge types and the checks that keep CA-supplied tokens harmless
//! (RFC 8555 §8.1: tokens are base64url; we also bound their length).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::UnixTime;

/// Shortest token accepted (RFC 8555 §8.3 requires at least 128 bits of entropy: 22 chars).
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 128;

/// How control of an identifier is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ChallengeKind {
    /// RFC 8555 §8.3: a file under `/.well-known/acme-challenge/` on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// RFC 8555 §8.4: a TXT record (not yet supported by a solver).
    #[serde(rename = "dns-01")]
    Dns01,
    /// RFC 8737: a special certificate over TLS (not yet supported by a solver).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// The RFC name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// Whether this challenge can prove a wildcard name (only DNS-01 can, RFC 8555 §7.1.3).
    pub fn supports_wildcards(self) -> bool {
        self == ChallengeKind::Dns01
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChallengeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "http-01" => ChallengeKind::Http01,
            "dns-01" => ChallengeKind::Dns01,
            "tls-alpn-01" => ChallengeKind::TlsAlpn01,
            other => {
                return Err(format!(
                    "unknown challenge type {other:?}; choose http-01, dns-01 or tls-alpn-01"
                ));
            }
        })
    }
}

/// A token that does not match `^[A-Za-z0-9_-]{16,128}$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("challenge token of {len} bytes is not 16-128 base64url characters")]
pub struct TokenError {
    /// Length of the refused token (the token itself is never echoed).
    pub len: usize,
}

/// Check a token from a CA or a request path.
pub fn validate_token(token: &str) -> Result<(), TokenError> {
    let ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TokenError { len: token.len() })
    }
}

/// An HTTP-01 response that the responder (on any node) serves while it is live.
#[derive(Clone, PartialEq, Eq)]
pub struct Http01Challenge {
    /// The token (validated).
    pub token: String,
    /// The host the CA will ask for (lowercase DNS name).
    pub host: String,
    /// `token.thumbprint`, the response body.
    pub key_authorization: String,
    /// The certificate being issued.
    pub certificate: String,
    /// After this the token is no longer served.
    pub expires_at: UnixTime,
}

impl fmt::Debug for Http01Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http01Challenge")
            .field("host", &self.host)
            .field("certificate", &self.certificate)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(validate_token("abcdefghijklmnop").is_ok());
        assert!(validate_token(&"A-_9".repeat(32)).is_ok());
        for bad in [
            "short",
            "abcdefghijklmno.",
            "../../etc/passwd0000",
            &"a".repeat(129),
        ] {
            assert!(validate_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_token() {
        let c = Http01Challenge {
            token: "tok-secret-0123456789".into(),
            host: "a.example".into(),
            key_authorization: "tok-secret-0123456789.thumb".into(),
            certificate: "www".into(),
            expires_at: 0,
        };
        assert!(!format!("{c:?}").contains("tok-secret"));
    }
}
