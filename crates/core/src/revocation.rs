//! Why a certificate is revoked: the [`RevocationReason`] codes of RFC 5280 §5.3.1 that an
//! ACME client may send (RFC 8555 §7.6), named as certbot and Let's Encrypt name them.
//!
//! Let's Encrypt accepts `unspecified`, `keyCompromise`, `affiliationChanged`, `superseded`
//! and `cessationOfOperation` from subscribers; the CA-side codes (`cACompromise`,
//! `certificateHold`, `privilegeWithdrawn`, ...) are not offered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A CRLReason a subscriber may give when revoking its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RevocationReason {
    /// No reason given (code 0).
    #[default]
    Unspecified,
    /// The private key was (or may have been) disclosed (code 1).
    KeyCompromise,
    /// The names or the subscriber's organisation changed (code 3).
    AffiliationChanged,
    /// A new certificate replaces this one (code 4).
    Superseded,
    /// The names are no longer in use (code 5).
    CessationOfOperation,
}

impl RevocationReason {
    /// Every reason, in the order `--help` lists them.
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
    ];

    /// The name used in the CLI, the API and the store (RFC 5280's ASN.1 names).
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
        }
    }

    /// The CRLReason code sent to the CA (RFC 5280 §5.3.1).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason name that is not one of [`RevocationReason::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason {0:?}; choose one of unspecified, keyCompromise, \
     affiliationChanged, superseded, cessationOfOperation"
)]
pub struct RevocationReasonError(pub String);

impl FromStr for RevocationReason {
    type Err = RevocationReasonError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RevocationReasonError(s.to_string()))
    }
}

impl TryFrom<String> for RevocationReason {
    type Error = RevocationReasonError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RevocationReason> for String {
    fn from(value: RevocationReason) -> Self {
        value.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
        }
        assert_eq!(RevocationReason::KeyCompromise.code(), 1);
        assert_eq!(RevocationReason::CessationOfOperation.code(), 5);
        let e = "keycompromise".parse::<RevocationReason>().unwrap_err();
        assert!(e.to_string().contains("keyCompromise"), "{e}");
        assert_eq!(
            serde_json::to_string(&RevocationReason::Superseded).unwrap(),
            "\"superseded\""
        );
    }
}
