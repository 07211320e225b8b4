//! Reading certificates the CA sent, and refusing ones that are not what we asked for.
//!
//! A chain from the CA is untrusted input (DESIGN.md §4): it must be valid PEM, bounded in
//! size, and its leaf must carry our public key and exactly the names we ordered.

use std::collections::BTreeSet;

use base64::Engine as _;
use certfleet_core::DnsName;
use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest PEM chain accepted from a CA.
pub const MAX_CHAIN_BYTES: usize = 256 * 1024;
/// Most certificates accepted in one chain.
pub const MAX_CHAIN_CERTS: usize = 10;

/// What certfleet needs to know about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Serial, lowercase hex without leading zero bytes.
    pub serial: String,
    /// Subject DN as text.
    pub subject: String,
    /// Issuer DN as text.
    pub issuer: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// DNS subjectAltNames, lowercase.
    pub dns_names: Vec<String>,
    /// The raw subject public key (EC point or PKCS#1 RSA key).
    pub public_key: Vec<u8>,
    /// The key's kind and size as certfleet names them (`ecdsa-p256`, `rsa2048`), or a
    /// description of another algorithm.
    pub key: String,
    /// The issuer's common name, if it has one.
    pub issuer_cn: Option<String>,
}

/// A PEM chain split into leaf and the rest.
#[derive(Debug, Clone)]
pub struct ParsedChain {
    /// The leaf as PEM.
    pub leaf_pem: String,
    /// The intermediates as PEM (possibly empty).
    pub chain_pem: String,
    /// Every certificate, leaf first.
    pub certs: Vec<CertInfo>,
}

impl ParsedChain {
    /// Parse a PEM bundle, leaf first.
    pub fn parse(pem: &str) -> Result<Self, String> {
        if pem.len() > MAX_CHAIN_BYTES {
            return Err(format!(
                "certificate chain of {} bytes is too large",
                pem.len()
            ));
        }
        let mut certs = Vec::new();
        let mut pems = Vec::new();
        for block in Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| format!("invalid PEM: {e}"))?;
            if block.label != "CERTIFICATE" {
                return Err(format!("unexpected PEM block {:?} in a chain", block.label));
            }
            certs.push(info_from_der(&block.contents)?);
            pems.push(to_pem(&block.contents));
            if certs.len() > MAX_CHAIN_CERTS {
                return Err(format!(
                    "more than {MAX_CHAIN_CERTS} certificates in a chain"
                ));
            }
        }
        if certs.is_empty() {
            return Err("no certificate in the PEM data".into());
        }
        Ok(Self {
            leaf_pem: pems[0].clone(),
            chain_pem: pems[1..].concat(),
            certs,
        })
    }

    /// The leaf's details.
    pub fn leaf(&self) -> &CertInfo {
        &self.certs[0]
    }

    /// The issuer DN of the top (last) certificate: the root the chain leads to.
    pub fn root(&self) -> &str {
        &self.certs[self.certs.len() - 1].issuer
    }

    /// The common name of [`Self::root`], which `preferred_chain` is compared with.
    pub fn root_name(&self) -> Option<&str> {
        self.certs[self.certs.len() - 1].issuer_cn.as_deref()
    }

    /// Check that the leaf holds `public_key` and covers exactly `names`.
    pub fn check_matches(&self, names: &[DnsName], public_key: &[u8]) -> Result<(), String> {
        let leaf = self.leaf();
        if leaf.public_key != public_key {
            return Err("the certificate's public key does not match the private key".into());
        }
        let want: BTreeSet<&str> = names.iter().map(DnsName::as_str).collect();
        let got: BTreeSet<&str> = leaf.dns_names.iter().map(String::as_str).collect();
        if want != got {
            let missing: Vec<_> = want.difference(&got).collect();
            let extra: Vec<_> = got.difference(&want).collect();
            return Err(format!(
                "the certificate's names differ from the request (missing {missing:?}, unexpected {extra:?})"
            ));
        }
        Ok(())
    }
}

/// Details of one DER certificate.
pub fn info_from_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("invalid certificate: {e}"))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some(s.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("invalid subjectAltName: {e}")),
    };
    Ok(CertInfo {
        serial: serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        key: key_description(&cert),
        issuer_cn: cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
    })
}

fn key_description(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "ecdsa-p256".into(),
            384 => "ecdsa-p384".into(),
            // P-521's coordinates take 66 bytes.
            521 | 528 => "ecdsa-p521".into(),
            bits => format!("ecdsa-{bits}"),
        },
        Ok(PublicKey::RSA(rsa)) => format!("rsa{}", rsa.key_size()),
        Ok(_) | Err(_) => cert.public_key().algorithm.algorithm.to_id_string(),
    }
}

pub use certfleet_core::serial_hex;

/// PEM of one DER certificate.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trip() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example.com".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let chain = ParsedChain::parse(&cert.pem()).unwrap();
        let names = [DnsName::parse("a.example.com").unwrap()];
        chain.check_matches(&names, key.public_key_raw()).unwrap();
        assert_eq!(chain.leaf().key, "ecdsa-p256");
        // Self-signed: the chain leads to the leaf's own subject.
        assert_eq!(chain.root(), chain.leaf().subject);
        assert_eq!(chain.root_name(), Some("rcgen self signed cert"));
        let other = [DnsName::parse("b.example.com").unwrap()];
        assert!(
            chain
                .check_matches(&other, key.public_key_raw())
                .unwrap_err()
                .contains("differ")
        );
        let wrong_key = rcgen::KeyPair::generate().unwrap();
        assert!(
            chain
                .check_matches(&names, wrong_key.public_key_raw())
                .is_err()
        );
        assert!(ParsedChain::parse("garbage").is_err());
    }
}
