//! Private keys and CSRs: a fresh key for every version (DESIGN.md §3).

use certfleet_core::{DnsName, KeyKind, Secret};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, RsaKeySize};

use crate::error::AcmeError;

/// A freshly generated key with its PKCS#8 PEM.
pub struct GeneratedKey {
    /// The key pair, for signing the CSR.
    pub pair: KeyPair,
    /// PKCS#8 PEM, to be sealed in the store.
    pub pem: Secret,
}

/// Generate a key of `kind`. RSA generation takes a while: call from a blocking thread.
pub fn generate(kind: KeyKind) -> Result<GeneratedKey, AcmeError> {
    let pair = match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyKind::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyKind::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
    }
    .map_err(|e| AcmeError::Key(format!("generating a {kind} key: {e}")))?;
    let pem = Secret::new(pair.serialize_pem());
    Ok(GeneratedKey { pair, pem })
}

/// A DER CSR for `names` (all as subjectAltName, empty subject, as Let's Encrypt prefers).
pub fn csr(names: &[DnsName], key: &KeyPair) -> Result<Vec<u8>, AcmeError> {
    let sans: Vec<String> = names.iter().map(|n| n.as_str().to_string()).collect();
    let mut params =
        CertificateParams::new(sans).map_err(|e| AcmeError::Key(format!("CSR names: {e}")))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|e| AcmeError::Key(format!("signing the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// The raw public key (EC point or PKCS#1 RSA key) of a PKCS#8 PEM private key.
pub fn public_key_of(key_pem: &str) -> Result<Vec<u8>, AcmeError> {
    let pair =
        KeyPair::from_pem(key_pem).map_err(|e| AcmeError::Key(format!("reading a key: {e}")))?;
    Ok(pair.public_key_raw().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_csrs_for_every_kind() {
        let names = [DnsName::parse("a.example.com").unwrap()];
        for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Rsa2048] {
            let key = generate(kind).unwrap();
            assert!(key.pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(!csr(&names, &key.pair).unwrap().is_empty());
            assert_eq!(
                public_key_of(key.pem.expose()).unwrap(),
                key.pair.public_key_raw()
            );
        }
    }
}
