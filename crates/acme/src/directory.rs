//! The CA's directory document (RFC 8555 §7.1.1): the URLs certfleet reaches itself and the
//! extensions it checks for — ARI (`renewalInfo`, RFC 9773 §4) and ACME profiles
//! (`meta.profiles`, draft-aaron-acme-profiles).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of the directory certfleet uses beyond what instant-acme reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    /// Where fresh nonces come from (§7.2).
    pub new_nonce: String,
    /// Where an account's key is changed (§7.3.5), if the CA allows it.
    #[serde(default)]
    pub key_change: Option<String>,
    /// The ARI base URL, when the CA offers renewal information (RFC 9773 §4).
    #[serde(default)]
    pub renewal_info: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub meta: Meta,
}

/// `meta` of the directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Profiles the CA offers, by name, with their descriptions.
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
}

impl Directory {
    /// Whether the CA answers ARI requests.
    pub fn has_ari(&self) -> bool {
        self.renewal_info.is_some()
    }

    /// The profile names the CA offers, sorted.
    pub fn profiles(&self) -> Vec<String> {
        self.meta.profiles.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pebble_directories() {
        let old: Directory = serde_json::from_str(
            r#"{"newNonce":"https://ca/nonce","newOrder":"https://ca/order","meta":{"termsOfService":"x"}}"#,
        )
        .unwrap();
        assert!(!old.has_ari());
        assert!(old.profiles().is_empty());
        let new: Directory = serde_json::from_str(
            r#"{"newNonce":"https://ca/nonce","renewalInfo":"https://ca/ari",
                "meta":{"profiles":{"shortlived":"s","default":"d"}}}"#,
        )
        .unwrap();
        assert!(new.has_ari());
        assert_eq!(new.profiles(), ["default", "shortlived"]);
    }
}
