//! Revoking a certificate at the CA with the issuer's account (RFC 8555 §7.6).
//!
//! The request is signed with the account key (`kid`), so the CA decides whether this account
//! may revoke the certificate: the account that ordered it may, and some CAs also let an
//! account revoke a certificate for names it holds valid authorizations for. Anything else is
//! refused with `unauthorized` (Pebble: "The certificate being revoked is not associated with
//! account ..."), which is passed on with the CA's words. A certificate the CA already revoked
//! (`alreadyRevoked`) counts as revoked.

use certfleet_core::RevocationReason;
use instant_acme::RevocationRequest;
use rustls_pki_types::CertificateDer;
use x509_parser::pem::Pem;

use crate::error::AcmeError;
use crate::issuer::{AcmeIssuer, BAD_NONCE_ORDER_RETRIES};

/// What the CA said to a revocation request it did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The CA revoked the certificate now.
    Revoked,
    /// The CA had revoked it before (`alreadyRevoked`).
    AlreadyRevoked,
}

/// The reason as instant-acme sends it; `unspecified` is left out of the request, as RFC
/// 5280 §5.3.1 asks of the CRL entry.
fn request_reason(reason: RevocationReason) -> Option<instant_acme::RevocationReason> {
    use instant_acme::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(R::KeyCompromise),
        RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
        RevocationReason::Superseded => Some(R::Superseded),
        RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
    }
}

/// The DER of the first certificate in `leaf_pem`.
fn leaf_der(leaf_pem: &str) -> Result<Vec<u8>, AcmeError> {
    let block = Pem::iter_from_buffer(leaf_pem.as_bytes())
        .next()
        .ok_or_else(|| AcmeError::BadResponse("no certificate in the stored PEM".into()))?
        .map_err(|e| AcmeError::BadResponse(format!("the stored PEM is invalid: {e}")))?;
    Ok(block.contents)
}

impl AcmeIssuer {
    /// Ask the CA to revoke the certificate whose leaf is `leaf_pem`, signed with this
    /// issuer's account (loaded or registered first). A refusal is an
    /// [`AcmeError::Problem`] carrying the CA's problem document (`unauthorized`,
    /// `malformed` for a certificate the CA does not know, `badRevocationReason`).
    pub async fn revoke(
        &self,
        leaf_pem: &str,
        reason: RevocationReason,
    ) -> Result<Revocation, AcmeError> {
        let der = CertificateDer::from(leaf_der(leaf_pem)?);
        let request = RevocationRequest {
            certificate: &der,
            reason: request_reason(reason),
        };
        let state = self.account().await?;
        let mut attempt = 0;
        loop {
            match state
                .account
                .revoke(&request)
                .await
                .map_err(AcmeError::from)
            {
                Ok(()) => return Ok(Revocation::Revoked),
                Err(AcmeError::Problem(p)) if p.short_type() == Some("alreadyRevoked") => {
                    return Ok(Revocation::AlreadyRevoked);
                }
                Err(e) if e.is_bad_nonce() && attempt < BAD_NONCE_ORDER_RETRIES => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_their_codes_and_unspecified_is_left_out() {
        assert!(request_reason(RevocationReason::Unspecified).is_none());
        for r in RevocationReason::ALL.into_iter().skip(1) {
            let sent = request_reason(r).expect("sent");
            assert_eq!(serde_json::to_string(&sent).unwrap(), r.code().to_string());
        }
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert!(leaf_der("not a certificate").is_err());
    }
}
