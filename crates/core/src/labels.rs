//! Labels on certificates (`app=www`) and the selectors that pick certificates for an agent
//! (`app=www,tier!=canary`).
//!
//! [`Labels`] is a small sorted map with checked keys and values; [`Selector`] is a list of
//! requirements that must all hold (the equality-based subset of Kubernetes label selectors).
//! An agent receives exactly the certificates whose labels its selector matches.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest label key or value.
pub const MAX_LABEL_PART_LEN: usize = 63;
/// Most labels on one certificate.
pub const MAX_LABELS: usize = 32;
/// Most requirements in one selector.
pub const MAX_REQUIREMENTS: usize = 16;

/// Why a label or selector was refused; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// `key=value` was expected.
    #[error("label {0:?} is not of the form key=value (for example app=www)")]
    NotKeyValue(String),
    /// A key that is empty, too long or has other characters.
    #[error(
        "label key {0:?} is not valid: use 1 to {MAX_LABEL_PART_LEN} lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    )]
    BadKey(String),
    /// A value that is too long or has other characters.
    #[error(
        "label value {0:?} is not valid: use up to {MAX_LABEL_PART_LEN} letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    )]
    BadValue(String),
    /// More than [`MAX_LABELS`] labels.
    #[error("{0} labels; a certificate carries at most {MAX_LABELS}")]
    TooMany(usize),
    /// An empty selector, which would match everything.
    #[error(
        "the selector is empty; give at least one requirement such as app=www (an agent receives only the certificates it selects)"
    )]
    EmptySelector,
    /// A requirement that does not parse.
    #[error(
        "selector requirement {0:?} is not valid; use key=value, key!=value, key (present) or !key (absent)"
    )]
    BadRequirement(String),
    /// More than [`MAX_REQUIREMENTS`] requirements.
    #[error("{0} selector requirements; at most {MAX_REQUIREMENTS} are allowed")]
    TooManyRequirements(usize),
}

/// Check a label key.
pub fn check_key(key: &str) -> Result<(), LabelError> {
    let ok = (1..=MAX_LABEL_PART_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadKey(key.to_string()))
    }
}

/// Check a label value (may be empty).
pub fn check_value(value: &str) -> Result<(), LabelError> {
    let ok = value.is_empty()
        || (value.len() <= MAX_LABEL_PART_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadValue(value.to_string()))
    }
}

/// A certificate's labels: checked keys and values, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Check every key and value of `map`.
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, LabelError> {
        if map.len() > MAX_LABELS {
            return Err(LabelError::TooMany(map.len()));
        }
        for (k, v) in &map {
            check_key(k)?;
            check_value(v)?;
        }
        Ok(Self(map))
    }

    /// Parse `key=value` arguments (as given to `--label`); a later key wins.
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let mut map = BTreeMap::new();
        for pair in pairs {
            let (k, v) = parse_pair(pair)?;
            map.insert(k, v);
        }
        Self::from_map(map)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Apply a JSON merge patch (RFC 7396): a value sets the label, `None` removes it.
    pub fn patched(&self, patch: &BTreeMap<String, Option<String>>) -> Result<Self, LabelError> {
        let mut map = self.0.clone();
        for (k, v) in patch {
            match v {
                Some(v) => {
                    map.insert(k.clone(), v.clone());
                }
                None => {
                    map.remove(k);
                }
            }
        }
        Self::from_map(map)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = LabelError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::from_map(map)
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.0
    }
}

/// Split and check one `key=value`.
pub fn parse_pair(pair: &str) -> Result<(String, String), LabelError> {
    let (k, v) = pair
        .split_once('=')
        .ok_or_else(|| LabelError::NotKeyValue(pair.to_string()))?;
    let (k, v) = (k.trim(), v.trim());
    check_key(k)?;
    check_value(v)?;
    Ok((k.to_string(), v.to_string()))
}

/// One requirement of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`: the label is present with this value.
    Equals(String, String),
    /// `key!=value`: the label is absent or has another value.
    NotEquals(String, String),
    /// `key`: the label is present (any value).
    Exists(String),
    /// `!key`: the label is absent.
    Absent(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v.as_str()),
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::Absent(k) => labels.get(k).is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::Exists(k) => f.write_str(k),
            Requirement::Absent(k) => write!(f, "!{k}"),
        }
    }
}

/// Requirements that must all hold, such as `app=www,tier!=canary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parse a comma-separated selector; an empty one is refused.
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(parse_requirement(part)?);
        }
        if out.is_empty() {
            return Err(LabelError::EmptySelector);
        }
        if out.len() > MAX_REQUIREMENTS {
            return Err(LabelError::TooManyRequirements(out.len()));
        }
        Ok(Self(out))
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// The requirements.
    pub fn requirements(&self) -> &[Requirement] {
        &self.0
    }
}

fn parse_requirement(part: &str) -> Result<Requirement, LabelError> {
    let bad = || LabelError::BadRequirement(part.to_string());
    let checked_key = |k: &str| check_key(k.trim()).map(|()| k.trim().to_string());
    if let Some((k, v)) = part.split_once("!=") {
        check_value(v.trim()).map_err(|_| bad())?;
        return Ok(Requirement::NotEquals(
            checked_key(k).map_err(|_| bad())?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, v)) = part.split_once('=') {
        let v = v.strip_prefix('=').unwrap_or(v).trim();
        check_value(v).map_err(|_| bad())?;
        return Ok(Requirement::Equals(
            checked_key(k).map_err(|_| bad())?,
            v.to_string(),
        ));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(checked_key(k).map_err(|_| bad())?));
    }
    Ok(Requirement::Exists(checked_key(part).map_err(|_| bad())?))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Selector {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Selector {
    type Error = LabelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> Self {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[&str]) -> Labels {
        Labels::parse_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn label_checks() {
        assert!(Labels::parse_pairs(["app=www", "tier=", "a.b_c-d=V1.x"]).is_ok());
        for bad in ["app", "=www", "App=www", "app=w w", "-a=b", "a=-b", "a/b=c"] {
            assert!(Labels::parse_pairs([bad]).is_err(), "{bad}");
        }
        let e = Labels::parse_pairs(["App=www"]).unwrap_err().to_string();
        assert!(e.contains("\"App\""), "{e}");
    }

    #[test]
    fn selectors_match() {
        let www = labels(&["app=www", "tier=edge"]);
        let api = labels(&["app=api"]);
        let s = Selector::parse("app=www").unwrap();
        assert!(s.matches(&www) && !s.matches(&api));
        let s = Selector::parse("app, tier!=edge").unwrap();
        assert!(!s.matches(&www) && s.matches(&api));
        let s = Selector::parse("!tier").unwrap();
        assert!(s.matches(&api) && !s.matches(&www));
        let s = Selector::parse("app==api").unwrap();
        assert!(s.matches(&api));
        assert!(!Selector::parse("app=www").unwrap().matches(&Labels::new()));
    }

    #[test]
    fn selector_errors_and_round_trip() {
        assert_eq!(Selector::parse(" , "), Err(LabelError::EmptySelector));
        assert!(Selector::parse("app=w w").is_err());
        assert!(Selector::parse("App=www").is_err());
        let s = Selector::parse("app=www, !x,tier!=a").unwrap();
        assert_eq!(s.to_string(), "app=www,!x,tier!=a");
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn merge_patch() {
        let l = labels(&["app=www", "tier=edge"]);
        let mut patch = BTreeMap::new();
        patch.insert("tier".to_string(), None);
        patch.insert("env".to_string(), Some("prod".to_string()));
        assert_eq!(l.patched(&patch).unwrap().to_string(), "app=www,env=prod");
    }
}
