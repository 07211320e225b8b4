//! ACME Renewal Information (RFC 9773): the certificate identifier and the suggested window.
//!
//! The identifier is `base64url(AKI keyIdentifier) "." base64url(serial)` (§4.1); instant-acme
//! builds it ([`CertificateIdentifier`]) from the bytes read here. The window is fetched with a
//! plain GET of `renewalInfo/<id>` (§4.2). instant-acme's own `renewal_info` refuses an answer
//! without Retry-After, which the RFC allows (the client then re-fetches after its default),
//! so the GET is sent here through the same client and the header read as an option.

use certfleet_core::policy::{self, AriWindow};
use instant_acme::CertificateIdentifier;
use rustls_pki_types::Der;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::RenewalInfo;
use crate::error::AcmeError;
use crate::issuer::AcmeIssuer;

/// The ARI identifier of the certificate in `leaf_pem`.
pub fn certificate_id(leaf_pem: &str) -> Result<CertificateIdentifier<'static>, String> {
    let block = Pem::iter_from_buffer(leaf_pem.as_bytes())
        .next()
        .ok_or("no certificate in the PEM data")?
        .map_err(|e| format!("invalid PEM: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&block.contents)
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or("the certificate has no authority key identifier")?;
    Ok(
        CertificateIdentifier::new(Der::from_slice(aki.0), Der::from_slice(cert.raw_serial()))
            .into_owned(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfoBody {
    suggested_window: WindowBody,
    #[serde(rename = "explanationURL", default)]
    explanation_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WindowBody {
    start: String,
    end: String,
}

fn parse_time(text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

/// Parse a renewalInfo answer; `retry_after` is the raw header, `now` the current time.
pub fn parse_renewal_info(
    body: &[u8],
    retry_after: Option<&str>,
    now: i64,
) -> Result<RenewalInfo, AcmeError> {
    let bad = |why: String| AcmeError::BadResponse(format!("renewal information: {why}"));
    let parsed: RenewalInfoBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let window = AriWindow {
        start: parse_time(&parsed.suggested_window.start).map_err(bad)?,
        end: parse_time(&parsed.suggested_window.end).map_err(bad)?,
    };
    Ok(RenewalInfo {
        window,
        retry_after: retry_after
            .and_then(|v| policy::retry_after(v, now))
            .map(|at| at - now),
        explanation_url: parsed.explanation_url,
    })
}

impl AcmeIssuer {
    /// The CA's renewal window for the certificate in `leaf_pem`; `Ok(None)` without ARI.
    pub async fn fetch_renewal_info(
        &self,
        leaf_pem: &str,
    ) -> Result<Option<RenewalInfo>, AcmeError> {
        let Some(base) = self.directory().await?.renewal_info.clone() else {
            return Ok(None);
        };
        let id = certificate_id(leaf_pem).map_err(AcmeError::BadResponse)?;
        let url = format!("{}/{id}", base.trim_end_matches('/'));
        let response = self.raw().await?.get(&url).await?.check()?;
        let info = parse_renewal_info(
            &response.body,
            response.retry_after(),
            certfleet_core::time::now(),
        )?;
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_info_answers() {
        let now = 1_800_000_000;
        let body = br#"{"suggestedWindow":{"start":"2027-01-15T00:00:00Z","end":"2027-01-16T12:00:00+00:00"},
                        "explanationURL":"https://ca.test/why"}"#;
        let info = parse_renewal_info(body, Some("3600"), now).unwrap();
        assert_eq!(info.window.start, 1_799_971_200);
        assert_eq!(info.window.end - info.window.start, 36 * 3600);
        assert_eq!(info.retry_after, Some(3600));
        assert_eq!(info.explanation_url.as_deref(), Some("https://ca.test/why"));
        let info = parse_renewal_info(body, None, now).unwrap();
        assert_eq!(
            info.retry_after, None,
            "absent: the caller's default applies"
        );
        for bad in [
            &br#"{"suggestedWindow":{"start":"yesterday","end":"2027-01-16T12:00:00Z"}}"#[..],
            br#"{"window":{}}"#,
            b"<html>",
        ] {
            let e = parse_renewal_info(bad, None, now).unwrap_err().to_string();
            assert!(e.contains("renewal information"), "{e}");
        }
    }

    #[test]
    fn certificate_ids_need_an_authority_key_identifier() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let ca_cert = ca.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &key);
        let mut leaf = rcgen::CertificateParams::new(vec!["a.example.com".into()]).unwrap();
        leaf.use_authority_key_identifier_extension = true;
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x8f, 0x01]));
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let id = certificate_id(&leaf.pem()).unwrap();
        assert_eq!(
            id.serial, "AI8B",
            "the serial's DER content bytes, base64url"
        );
        assert!(!id.authority_key_identifier.is_empty());
        let e = certificate_id(&ca_cert.pem()).unwrap_err();
        assert!(e.contains("authority key identifier"), "{e}");
    }
}
