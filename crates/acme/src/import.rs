//! Checking certificate material a person brings (`certfleet cert import`,
//! `import-certbot`): [`assemble`] finds the leaf that matches the private key, orders the
//! rest of the chain leaf-first whatever order it came in, refuses pieces that do not belong
//! to it, and verifies the chain with webpki.
//!
//! **Trust anchors.** A chain verifies when it leads, by valid signatures and within validity,
//! to a root the server's system trusts (`rustls-native-certs`: `/etc/ssl/certs` and
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`) or to a root given explicitly ([`Material::ca_pem`],
//! `--ca-file`, for a private CA or a test CA). A self-signed certificate inside the material is
//! never trusted by itself: pass it with `--ca-file` to vouch for it.
//!
//! Every refusal is an [`AcmeError::Material`] naming the piece it is about (`cert_pem`,
//! `key_pem`, `chain_pem`, `ca_pem`), so callers can name the file the user gave.

use certfleet_core::{DnsName, KeyKind, Secret};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::AcmeError;
use crate::inspect::{CertInfo, MAX_CHAIN_BYTES, MAX_CHAIN_CERTS, info_from_der, to_pem};

/// Field name of the certificate file.
pub const CERT: &str = "cert_pem";
/// Field name of the private key file.
pub const KEY: &str = "key_pem";
/// Field name of the chain file.
pub const CHAIN: &str = "chain_pem";
/// Field name of the extra trust roots.
pub const CA: &str = "ca_pem";

/// What a person hands over, as PEM text.
#[derive(Debug, Clone, Copy)]
pub struct Material<'a> {
    /// The certificate (possibly a full chain).
    pub cert_pem: &'a str,
    /// The private key: PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub key_pem: &'a str,
    /// Intermediates, in any order (may be empty).
    pub chain_pem: &'a str,
    /// Roots to trust besides the system's (may be empty).
    pub ca_pem: &'a str,
    /// Accept a leaf whose notAfter has passed (verified as of its last valid second).
    pub allow_expired: bool,
    /// The current time, Unix seconds.
    pub now: i64,
}

/// Material that passed every check.
#[derive(Debug)]
pub struct Assembled {
    /// The leaf, PEM.
    pub leaf_pem: String,
    /// The intermediates (and a root if one was given), leaf-to-root, PEM.
    pub chain_pem: String,
    /// Every certificate, leaf first.
    pub certs: Vec<CertInfo>,
    /// The private key as given (its PEM block alone).
    pub key_pem: Secret,
    /// Its kind.
    pub key_kind: KeyKind,
    /// The leaf's DNS names certfleet can order (its declaration).
    pub domains: Vec<DnsName>,
    /// Names of the leaf kept out of `domains` (`localhost`, a single label): served by the
    /// imported certificate, but no public CA orders them, so a renewal would not either.
    pub skipped_names: Vec<String>,
    /// The subject of the root the chain verified against.
    pub anchor: String,
}

impl Assembled {
    /// The leaf's details.
    pub fn leaf(&self) -> &CertInfo {
        &self.certs[0]
    }
}

fn refuse(field: &str, message: impl Into<String>) -> AcmeError {
    AcmeError::Material {
        field: field.to_string(),
        message: message.into(),
    }
}

/// One certificate of the material.
struct Piece {
    der: Vec<u8>,
    info: CertInfo,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    field: &'static str,
}

/// Check `m` and put it in order; see the module docs for what is refused.
pub fn assemble(m: &Material<'_>) -> Result<Assembled, AcmeError> {
    let key = read_key(m.key_pem)?;
    let mut pool = read_certs(CERT, m.cert_pem, true)?;
    let position = pool
        .iter()
        .position(|p| p.info.public_key == key.pair.public_key_raw())
        .ok_or_else(|| {
            refuse(
                KEY,
                format!(
                    "the private key does not match the certificate ({})",
                    pool[0].info.subject
                ),
            )
        })?;
    let leaf = pool.remove(position);
    pool.extend(read_certs(CHAIN, m.chain_pem, false)?);
    pool.dedup_by(|a, b| a.der == b.der);
    let path = order(leaf, pool)?;
    let key_kind = key_kind(&key, &path[0].info)?;
    let (domains, skipped_names) = domains(&path[0].info)?;
    let anchor = verify(&path, m)?;
    Ok(Assembled {
        leaf_pem: to_pem(&path[0].der),
        chain_pem: path[1..].iter().map(|p| to_pem(&p.der)).collect(),
        certs: path.into_iter().map(|p| p.info).collect(),
        key_pem: key.pem,
        key_kind,
        domains,
        skipped_names,
        anchor,
    })
}

/// Every `CERTIFICATE` block of one piece; `required` refuses an empty one.
fn read_certs(field: &'static str, pem: &str, required: bool) -> Result<Vec<Piece>, AcmeError> {
    if pem.len() > MAX_CHAIN_BYTES {
        return Err(refuse(
            field,
            format!(
                "{} bytes is too large (at most {MAX_CHAIN_BYTES})",
                pem.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let block = block.map_err(|e| refuse(field, format!("is not valid PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            let hint = if block.label.contains("PRIVATE KEY") {
                " (a private key belongs in --key)"
            } else {
                ""
            };
            return Err(refuse(
                field,
                format!(
                    "holds a {:?} block where certificates were expected{hint}",
                    block.label
                ),
            ));
        }
        let info = info_from_der(&block.contents)
            .map_err(|e| refuse(field, format!("certificate {} is unusable: {e}", i + 1)))?;
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|e| refuse(field, format!("certificate {} is unusable: {e}", i + 1)))?;
        out.push(Piece {
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            der: block.contents.clone(),
            info,
            field,
        });
        if out.len() > MAX_CHAIN_CERTS {
            return Err(refuse(
                field,
                format!("holds more than {MAX_CHAIN_CERTS} certificates"),
            ));
        }
    }
    if required && out.is_empty() {
        return Err(refuse(
            field,
            "holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)",
        ));
    }
    Ok(out)
}

struct Key {
    pair: rcgen::KeyPair,
    pem: Secret,
}

fn read_key(pem: &str) -> Result<Key, AcmeError> {
    if pem.len() > MAX_CHAIN_BYTES {
        return Err(refuse(KEY, format!("{} bytes is too large", pem.len())));
    }
    let mut labels = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| refuse(KEY, format!("is not valid PEM: {e}")))?;
        if block.label == "ENCRYPTED PRIVATE KEY" || pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(refuse(
                KEY,
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)",
            ));
        }
        if !block.label.ends_with("PRIVATE KEY") {
            labels.push(block.label.clone());
            continue;
        }
        let pair = rcgen::KeyPair::try_from(block.contents.as_slice()).map_err(|e| {
            refuse(
                KEY,
                format!(
                    "the {} block is not a usable key (certfleet takes ECDSA P-256 or P-384, or \
                     RSA of 2048 to 4096 bits; RSA under 2048 bits is refused as too weak): {e}",
                    block.label
                ),
            )
        })?;
        let pem = Secret::new(pem_block(&block.label, &block.contents));
        return Ok(Key { pair, pem });
    }
    let found = if labels.is_empty() {
        "no PEM data".to_string()
    } else {
        format!("only {}", labels.join(", "))
    };
    Err(refuse(
        KEY,
        format!(
            "holds no private key (expected a -----BEGIN PRIVATE KEY----- block; found {found})"
        ),
    ))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The leaf followed by each issuer in turn; every piece must find its place.
fn order(leaf: Piece, mut pool: Vec<Piece>) -> Result<Vec<Piece>, AcmeError> {
    let mut path = vec![leaf];
    loop {
        let last = path.last().expect("the leaf is there");
        if last.subject_raw == last.issuer_raw {
            break;
        }
        let Some(next) = pool.iter().position(|p| p.subject_raw == last.issuer_raw) else {
            break;
        };
        path.push(pool.remove(next));
    }
    if let Some(stray) = pool.first() {
        return Err(refuse(
            stray.field,
            format!(
                "the certificate {} does not chain to the leaf {}: it issued none of {}",
                stray.info.subject,
                path[0].info.subject,
                path.iter()
                    .map(|p| p.info.subject.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        ));
    }
    Ok(path)
}

fn key_kind(key: &Key, leaf: &CertInfo) -> Result<KeyKind, AcmeError> {
    let alg = key.pair.algorithm();
    let kind = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(KeyKind::EcdsaP256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Some(KeyKind::EcdsaP384)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        leaf.key.parse().ok()
    } else {
        None
    };
    let described = match leaf.key.as_str() {
        "1.3.101.112" => "an Ed25519".to_string(),
        "1.3.101.113" => "an Ed448".to_string(),
        "ecdsa-p521" => "an ECDSA P-521 (ecdsa-p521)".to_string(),
        other => format!("a {other}"),
    };
    kind.ok_or_else(|| {
        refuse(
            KEY,
            format!(
                "{described} key is not supported; certfleet manages ecdsa-p256, ecdsa-p384, rsa2048, rsa3072 and rsa4096"
            ),
        )
    })
}

/// The leaf's names certfleet can order, and the others (such as `localhost`, which private
/// CAs often add), kept out of the declaration; refused when none is left.
fn domains(leaf: &CertInfo) -> Result<(Vec<DnsName>, Vec<String>), AcmeError> {
    if leaf.dns_names.is_empty() {
        return Err(refuse(
            CERT,
            format!(
                "the certificate ({}) names no DNS name in its subjectAltName",
                leaf.subject
            ),
        ));
    }
    let mut out: Vec<DnsName> = Vec::new();
    let mut skipped = Vec::new();
    let mut first_error = None;
    for name in &leaf.dns_names {
        match DnsName::parse(name) {
            Ok(parsed) if !out.contains(&parsed) => out.push(parsed),
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert_with(|| format!("the certificate names {name:?}: {e}"));
                skipped.push(name.clone());
            }
        }
    }
    if out.is_empty() {
        return Err(refuse(
            CERT,
            first_error.unwrap_or_else(|| "the certificate names no usable DNS name".into()),
        ));
    }
    Ok((out, skipped))
}

/// Verify the path with webpki against the system's roots and `ca_pem`; the anchor's subject.
fn verify(path: &[Piece], m: &Material<'_>) -> Result<String, AcmeError> {
    let leaf = &path[0].info;
    if leaf.not_after <= m.now && !m.allow_expired {
        return Err(refuse(
            CERT,
            format!(
                "the certificate ({}) expired at {}; pass --allow-expired to import it anyway",
                leaf.subject,
                rfc3339(leaf.not_after)
            ),
        ));
    }
    let at = m.now.clamp(leaf.not_before, leaf.not_after - 1);
    let extra = read_certs(CA, m.ca_pem, false)?;
    let mut roots: Vec<CertificateDer<'static>> = extra
        .iter()
        .map(|p| CertificateDer::from(p.der.clone()))
        .collect();
    roots.extend(rustls_native_certs::load_native_certs().certs);
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let leaf_der = CertificateDer::from(path[0].der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| refuse(CERT, format!("the certificate is unusable: {e}")))?;
    let intermediates: Vec<CertificateDer<'_>> = path[1..]
        .iter()
        .map(|p| CertificateDer::from(p.der.as_slice()))
        .collect();
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.max(0) as u64));
    let verified = ee
        .verify_for_usage(
            algs,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            // What is wrong with the leaf itself is the --cert file's fault.
            let field = match e {
                webpki::Error::RequiredEkuNotFoundContext(_) | webpki::Error::CaUsedAsEndEntity => {
                    CERT
                }
                _ => CHAIN,
            };
            refuse(field, chain_failure(&e, path))
        })?;
    let anchor = verified.anchor();
    let anchor_subject = x509_parser::x509::X509Name::from_der(anchor.subject.as_ref())
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|_| "a trusted root".to_string());
    Ok(anchor_subject)
}

fn chain_failure(e: &webpki::Error, path: &[Piece]) -> String {
    let top = &path[path.len() - 1].info;
    let why = match e {
        webpki::Error::UnknownIssuer => format!(
            "no trusted root issued {} (issuer {}); trusted are the system's roots and --ca-file",
            top.subject, top.issuer
        ),
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not verify".to_string()
        }
        webpki::Error::CertExpired { .. } => "a certificate in the chain has expired".to_string(),
        webpki::Error::CertNotValidYet { .. } => {
            "a certificate in the chain is not valid yet".to_string()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the certificate is not for TLS servers (no serverAuth extended key usage)".to_string()
        }
        webpki::Error::CaUsedAsEndEntity => {
            "the certificate is a CA certificate (basicConstraints CA:TRUE), not a server \
             certificate: `openssl req -x509` makes one; sign a server certificate with it \
             and import that (with this CA in --ca-file)"
                .to_string()
        }
        webpki::Error::EndEntityUsedAsCa => {
            "a certificate in the chain signs another but is not a CA (basicConstraints)"
                .to_string()
        }
        other => format!("{other:?}"),
    };
    format!("the chain does not verify: {why}")
}

fn rfc3339(t: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};

    use super::*;

    /// A self-signed serverAuth certificate for `name` with a key of `alg`.
    fn self_signed(name: &str, alg: &'static SignatureAlgorithm) -> (String, String) {
        let key = match alg {
            a if a == &rcgen::PKCS_RSA_SHA256 => {
                KeyPair::generate_rsa_for(a, rcgen::RsaKeySize::_2048).unwrap()
            }
            a => KeyPair::generate_for(a).unwrap(),
        };
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn material<'a>(cert: &'a str, key: &'a str, ca: &'a str) -> Material<'a> {
        Material {
            cert_pem: cert,
            key_pem: key,
            chain_pem: "",
            ca_pem: ca,
            allow_expired: false,
            now: 1_900_000_000,
        }
    }

    fn refusal(m: &Material<'_>) -> (String, String) {
        match assemble(m) {
            Err(AcmeError::Material { field, message }) => (field, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn key_kinds_come_from_the_key() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::EcdsaP384),
            (&rcgen::PKCS_RSA_SHA256, KeyKind::Rsa2048),
        ] {
            let (cert, key) = self_signed("a.example.test", alg);
            let a = assemble(&material(&cert, &key, &cert)).unwrap();
            assert_eq!(a.key_kind, kind);
            assert_eq!(a.domains[0].as_str(), "a.example.test");
            assert!(a.chain_pem.is_empty());
        }
    }

    #[test]
    fn a_leaf_not_for_tls_servers_is_the_cert_files_fault() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).unwrap().pem();
        let (field, message) = refusal(&material(&cert, &key.serialize_pem(), &cert));
        assert_eq!(field, CERT, "{message}");
        assert!(message.contains("not for TLS servers"), "{message}");
    }

    #[test]
    fn a_self_signed_certificate_is_trusted_only_when_given_as_a_root() {
        let (cert, key) = self_signed("a.example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (field, message) = refusal(&material(&cert, &key, ""));
        assert_eq!(field, CHAIN);
        assert!(message.contains("no trusted root issued"), "{message}");
    }

    #[test]
    fn unusable_keys_say_why() {
        let (cert, _) = self_signed("a.example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (ed_cert, ed_key) = self_signed("a.example.test", &rcgen::PKCS_ED25519);
        let (field, message) = refusal(&material(&ed_cert, &ed_key, &ed_cert));
        assert_eq!(field, KEY);
        assert!(
            message.starts_with("an Ed25519 key is not supported"),
            "{message}"
        );
        let (p521_cert, p521_key) = self_signed("a.example.test", &rcgen::PKCS_ECDSA_P521_SHA512);
        let (field, message) = refusal(&material(&p521_cert, &p521_key, &p521_cert));
        assert_eq!(field, KEY);
        assert!(
            message.starts_with("an ECDSA P-521 (ecdsa-p521) key is not supported"),
            "{message}"
        );

        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let (field, message) = refusal(&material(&cert, encrypted, &cert));
        assert_eq!(field, KEY);
        assert!(message.contains("is encrypted"), "{message}");

        let (field, message) = refusal(&material(&cert, &cert, &cert));
        assert_eq!(field, KEY);
        assert!(message.contains("found only CERTIFICATE"), "{message}");
    }

    #[test]
    fn a_key_in_the_certificate_file_is_pointed_at() {
        let (cert, key) = self_signed("a.example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (field, message) = refusal(&material(&format!("{cert}{key}"), &key, &cert));
        assert_eq!(field, CERT);
        assert!(
            message.contains("a private key belongs in --key"),
            "{message}"
        );
    }
}
