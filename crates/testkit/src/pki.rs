//! [`TestPki`]: a throw-away root → intermediate CA pair that signs leaf certificates, for
//! tests of certificates people import (valid, expired, from another CA, in any order).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A leaf certificate and its private key, as PEM files would hold them.
#[derive(Clone)]
pub struct TestLeaf {
    /// The leaf certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for TestLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLeaf").finish_non_exhaustive()
    }
}

/// When a leaf is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago for 90 days.
    Current,
    /// In 2020, long expired.
    Expired,
}

/// A root CA and an intermediate it signed; the intermediate signs leaves.
pub struct TestPki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl TestPki {
    /// A new root (`<name> Root`) and intermediate (`<name> Intermediate`).
    pub fn new(name: &str) -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("{name} Root")),
            KeyPair::generate().expect("root key"),
        )
        .expect("self-sign root");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("{name} Intermediate")),
            KeyPair::generate().expect("intermediate key"),
            &root,
        )
        .expect("sign intermediate");
        Self { root, intermediate }
    }

    /// The root certificate, PEM (what `--ca-file` takes).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The intermediate certificate, PEM (what `--chain` takes).
    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    /// A P-256 leaf for `names`, signed by the intermediate.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> TestLeaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf names");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        match validity {
            Validity::Current => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs() as i64;
                let day = 86_400;
                params.not_before = rcgen_time(now - day);
                params.not_after = rcgen_time(now + 90 * day);
            }
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 4, 1);
            }
        }
        let cert = params
            .signed_by(&key, &self.intermediate)
            .expect("sign leaf");
        TestLeaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn rcgen_time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).expect("valid time")
}
