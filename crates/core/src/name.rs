//! DNS identifiers as certfleet accepts them ([`DnsName`]).
//!
//! The rules follow RFC 1035 §2.3.4 (lengths), RFC 5890 (LDH labels, `xn--` A-labels are LDH)
//! and RFC 8555 §7.1.3 (a wildcard is a single leftmost `*` label). Names are compared and
//! stored in lowercase ASCII without a trailing dot.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest DNS name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// Longest single label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an acceptable DNS identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name was empty.
    #[error("domain name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("domain name {name:?} is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// The offending name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// Two dots in a row, or a leading dot.
    #[error("domain name {name:?} has an empty label")]
    EmptyLabel {
        /// The offending name.
        name: String,
    },
    /// A label longer than [`MAX_LABEL_LEN`].
    #[error("domain name {name:?} has a label of {len} characters; the limit is {MAX_LABEL_LEN}")]
    LabelTooLong {
        /// The offending name.
        name: String,
        /// The label's length.
        len: usize,
    },
    /// A character outside letters, digits and hyphen.
    #[error(
        "domain name {name:?} contains {ch:?}; only letters, digits and '-' are allowed in a label"
    )]
    BadCharacter {
        /// The offending name.
        name: String,
        /// The first bad character.
        ch: char,
    },
    /// A label starting or ending with a hyphen.
    #[error("domain name {name:?} has a label that starts or ends with '-'")]
    HyphenAtEdge {
        /// The offending name.
        name: String,
    },
    /// `*` anywhere but as the whole leftmost label.
    #[error(
        "domain name {name:?}: a wildcard must be the whole leftmost label, as in *.example.com"
    )]
    BadWildcard {
        /// The offending name.
        name: String,
    },
    /// An IP address given where a DNS name is expected.
    #[error("{name:?} is an IP address, not a DNS name")]
    IpAddress {
        /// The offending name.
        name: String,
    },
    /// A single-label name such as `localhost` or `com`: no public CA issues for it.
    #[error("domain name {name:?} has a single label; a certificate needs a fully qualified name")]
    SingleLabel {
        /// The offending name.
        name: String,
    },
    /// The last label is all digits, which no top-level domain is.
    #[error("domain name {name:?} ends in a numeric label, which is not a valid top-level domain")]
    NumericTld {
        /// The offending name.
        name: String,
    },
}

/// A validated, lowercase DNS name, possibly a wildcard (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    /// Validate `input` and return it in canonical form (lowercase, no trailing dot).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        let name = trimmed.to_ascii_lowercase();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let owned = || input.to_string();
        if name.parse::<IpAddr>().is_ok() || is_bracketed_ip(&name) {
            return Err(NameError::IpAddress { name: owned() });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                name: owned(),
                len: name.len(),
            });
        }
        let labels: Vec<&str> = name.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            check_label(label, i == 0, &owned)?;
        }
        let body = if labels[0] == "*" {
            &labels[1..]
        } else {
            &labels[..]
        };
        if body.len() < 2 {
            return Err(NameError::SingleLabel { name: owned() });
        }
        if body
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(NameError::NumericTld { name: owned() });
        }
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a wildcard name (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name without a leading `*.` (the name a DNS-01 record is placed under).
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }
}

fn is_bracketed_ip(name: &str) -> bool {
    name.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .is_some_and(|s| s.parse::<IpAddr>().is_ok())
}

fn check_label(label: &str, leftmost: bool, name: &dyn Fn() -> String) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel { name: name() });
    }
    if label.contains('*') {
        return if label == "*" && leftmost {
            Ok(())
        } else {
            Err(NameError::BadWildcard { name: name() })
        };
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong {
            name: name(),
            len: label.len(),
        });
    }
    if let Some(ch) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::BadCharacter { name: name(), ch });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::HyphenAtEdge { name: name() });
    }
    Ok(())
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DnsName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DnsName> for String {
    fn from(value: DnsName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_canonicalises() {
        assert_eq!(
            DnsName::parse("WWW.Example.COM.").unwrap().as_str(),
            "www.example.com"
        );
        assert!(DnsName::parse("*.example.com").unwrap().is_wildcard());
        assert_eq!(
            DnsName::parse("*.example.com").unwrap().base(),
            "example.com"
        );
        assert!(DnsName::parse("xn--bcher-kva.example").is_ok());
        assert!(DnsName::parse(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    type Check = fn(&NameError) -> bool;

    #[test]
    fn rejects_bad_names() {
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, NameError::Empty)),
            ("a..com", |e| matches!(e, NameError::EmptyLabel { .. })),
            (".a.com", |e| matches!(e, NameError::EmptyLabel { .. })),
            ("foo_bar.com", |e| {
                matches!(e, NameError::BadCharacter { ch: '_', .. })
            }),
            ("-foo.com", |e| matches!(e, NameError::HyphenAtEdge { .. })),
            ("foo-.com", |e| matches!(e, NameError::HyphenAtEdge { .. })),
            ("www.*.com", |e| matches!(e, NameError::BadWildcard { .. })),
            ("*foo.com", |e| matches!(e, NameError::BadWildcard { .. })),
            ("*.*.com", |e| matches!(e, NameError::BadWildcard { .. })),
            ("192.0.2.1", |e| matches!(e, NameError::IpAddress { .. })),
            ("::1", |e| matches!(e, NameError::IpAddress { .. })),
            ("[2001:db8::1]", |e| {
                matches!(e, NameError::IpAddress { .. })
            }),
            ("localhost", |e| matches!(e, NameError::SingleLabel { .. })),
            ("*.com", |e| matches!(e, NameError::SingleLabel { .. })),
            ("a.123", |e| matches!(e, NameError::NumericTld { .. })),
        ];
        for (input, check) in cases {
            let err = DnsName::parse(input).expect_err(input);
            assert!(check(&err), "{input:?} gave {err:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            DnsName::parse(&long_label),
            Err(NameError::LabelTooLong { len: 64, .. })
        ));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(
            DnsName::parse(&long_name),
            Err(NameError::TooLong { .. })
        ));
    }
}
