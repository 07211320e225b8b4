//! DNS identifiers as certfleet accepts them ([`DnsName`]).
//!
//! The rules follow RFC 1035 §2.3.4 (lengths), RFC 5890/5891 (LDH labels; `--` in the third
//! and fourth position only for `xn--` A-labels) and RFC 8555 §7.1.3 (a wildcard is a single
//! leftmost `*` label). Names are compared and stored in lowercase ASCII without a trailing dot.
//!
//! Internationalized names: a Unicode label (`bücher`) is converted to its A-label
//! (`xn--bcher-kva`) by UTS #46 processing (the `idna` crate) and stored as such; an `xn--`
//! label must decode to a valid Unicode label or the name is refused.
//! [`DnsName::to_unicode`] gives the form people read.

use std::fmt;
use std::net::IpAddr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
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
    /// A Unicode label that UTS #46 cannot convert, or an `xn--` label that does not decode to
    /// a valid Unicode label.
    #[error("domain name {name:?}: label {label:?} {reason}")]
    Idna {
        /// The offending name.
        name: String,
        /// The label as the user wrote it.
        label: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An ASCII label with `--` in the third and fourth positions that is not an `xn--` A-label.
    #[error(
        "domain name {name:?}: label {label:?} has '--' in the third and fourth positions, which \
         is reserved for encoded labels such as xn-- (RFC 5891 §4.2.3.1)"
    )]
    ReservedLabel {
        /// The offending name.
        name: String,
        /// The label.
        label: String,
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
    /// Validate `input` and return it in canonical form (lowercase ASCII, A-labels for
    /// internationalized labels, no trailing dot).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let owned = || input.to_string();
        let lower = trimmed.to_ascii_lowercase();
        if lower.parse::<IpAddr>().is_ok() || is_bracketed_ip(&lower) {
            return Err(NameError::IpAddress { name: owned() });
        }
        let name = if needs_idna(trimmed) {
            to_a_labels(trimmed, &owned)?
        } else {
            lower
        };
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

    /// The name as people read it: A-labels decoded to Unicode (`xn--bcher-kva.example` →
    /// `bücher.example`); names without A-labels are returned unchanged.
    pub fn to_unicode(&self) -> String {
        if !self.0.split('.').any(is_a_label) {
            return self.0.clone();
        }
        let (prefix, body) = match self.0.strip_prefix("*.") {
            Some(body) => ("*.", body),
            None => ("", self.0.as_str()),
        };
        let (unicode, _) = idna::domain_to_unicode(body);
        format!("{prefix}{unicode}")
    }

    /// The name for messages people read: `bücher.example (xn--bcher-kva.example)` when it
    /// has A-labels, the name alone otherwise.
    pub fn for_people(&self) -> String {
        if self.is_internationalized() {
            format!("{} ({})", self.to_unicode(), self.0)
        } else {
            self.0.clone()
        }
    }

    /// Whether [`Self::to_unicode`] differs from the stored form.
    pub fn is_internationalized(&self) -> bool {
        self.0.split('.').any(is_a_label)
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

/// The ACE prefix of an A-label (RFC 5890 §2.3.2.1).
const ACE_PREFIX: &str = "xn--";

fn is_a_label(label: &str) -> bool {
    label.len() >= ACE_PREFIX.len() && label[..ACE_PREFIX.len()].eq_ignore_ascii_case(ACE_PREFIX)
}

/// Whether `name` holds a Unicode label or an A-label, which UTS #46 must process.
fn needs_idna(name: &str) -> bool {
    !name.is_ascii() || name.split('.').any(is_a_label)
}

/// Convert every Unicode label to its A-label and check every `xn--` label decodes to a valid
/// Unicode label (UTS #46 non-transitional processing with the STD3 rules). A refused label is
/// named as the user wrote it; plain ASCII labels pass through lowercased for the LDH checks.
fn to_a_labels(name: &str, owned: &dyn Fn() -> String) -> Result<String, NameError> {
    let uts46 = Uts46::new();
    let mut out = Vec::new();
    for (i, label) in name.split('.').enumerate() {
        if (label.is_ascii() && !is_a_label(label)) || (i == 0 && label == "*") {
            out.push(label.to_ascii_lowercase());
            continue;
        }
        let converted = uts46.to_ascii(
            label.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Ignore,
        );
        match converted {
            Ok(ascii) if !ascii.is_empty() && !ascii.contains('.') => out.push(ascii.into_owned()),
            _ => {
                let reason = if is_a_label(label) {
                    "is not a valid A-label: it does not decode to a valid Unicode label (RFC 5891 §5.4)"
                } else {
                    "cannot be converted to an A-label (IDNA, UTS #46): it holds a character that is not allowed in domain names"
                };
                return Err(NameError::Idna {
                    name: owned(),
                    label: label.to_string(),
                    reason,
                });
            }
        }
    }
    let ascii = out.join(".");
    // Rules that span labels (the Bidi rule of RFC 5893) need the whole name.
    let whole = ascii.strip_prefix("*.").unwrap_or(&ascii);
    if uts46
        .to_ascii(
            whole.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Ignore,
        )
        .is_err()
    {
        return Err(NameError::Idna {
            name: owned(),
            label: name.to_string(),
            reason: "breaks a rule of internationalized names across labels (such as the Bidi rule of RFC 5893)",
        });
    }
    Ok(ascii)
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
    if label.get(2..4) == Some("--") && !is_a_label(label) {
        return Err(NameError::ReservedLabel {
            name: name(),
            label: label.to_string(),
        });
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
        assert!(DnsName::parse("XN--BCHER-KVA.example").is_ok());
        assert!(DnsName::parse(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn unicode_labels_are_stored_as_a_labels() {
        let cases = [
            ("bücher.example.test", "xn--bcher-kva.example.test"),
            ("BÜCHER.Example.Test.", "xn--bcher-kva.example.test"),
            ("*.bücher.example.test", "*.xn--bcher-kva.example.test"),
            ("straße.example", "xn--strae-oqa.example"),
            ("www.münchen.example", "www.xn--mnchen-3ya.example"),
        ];
        for (input, stored) in cases {
            let name = DnsName::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(name.as_str(), stored, "{input}");
            assert!(name.is_internationalized());
        }
        assert_eq!(
            DnsName::parse("xn--bcher-kva.example.test")
                .unwrap()
                .to_unicode(),
            "bücher.example.test"
        );
        assert_eq!(
            DnsName::parse("*.bücher.example.test")
                .unwrap()
                .to_unicode(),
            "*.bücher.example.test"
        );
        let plain = DnsName::parse("www.example.test").unwrap();
        assert!(!plain.is_internationalized());
        assert_eq!(plain.to_unicode(), "www.example.test");
        assert_eq!(plain.for_people(), "www.example.test");
        assert_eq!(
            DnsName::parse("bücher.example.test").unwrap().for_people(),
            "bücher.example.test (xn--bcher-kva.example.test)"
        );
    }

    #[test]
    fn malformed_a_labels_are_refused_by_name() {
        for (input, label) in [
            ("xn--zz.example.test", "xn--zz"),
            ("www.xn--a.example", "xn--a"),
            ("XN--ABC.example", "XN--ABC"),
            ("bücher.xn--zz", "xn--zz"),
        ] {
            match DnsName::parse(input) {
                Err(NameError::Idna {
                    label: l, reason, ..
                }) => {
                    assert_eq!(l, label, "{input}");
                    assert!(reason.contains("A-label"), "{input}: {reason}");
                }
                other => panic!("{input}: expected an A-label error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unconvertible_unicode_labels_are_refused_by_name() {
        for (input, label) in [
            ("bü_cher.example", "bü_cher"),
            ("a\u{2028}b.example", "a\u{2028}b"),
        ] {
            match DnsName::parse(input) {
                Err(NameError::Idna { label: l, .. }) => assert_eq!(l, label, "{input}"),
                other => panic!("{input}: expected an IDNA error, got {other:?}"),
            }
        }
        let e = DnsName::parse("ab--cd.example.com").unwrap_err();
        assert!(matches!(e, NameError::ReservedLabel { .. }), "{e:?}");
        assert!(e.to_string().contains("\"ab--cd\""), "{e}");
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
