//! Signed requests certfleet sends itself, next to instant-acme (RFC 8555 §6.2, §6.3, §6.5).
//!
//! instant-acme creates accounts and orders, answers challenges and finalizes. It does not
//! hand back response headers or let a caller read resources it has no type for, so a few
//! requests are sent here through the same [`CaClient`]: POST-as-GET of the account object
//! (its contacts, §7.3), account updates (§7.3.2), order polls that honour `Retry-After`
//! (§7.4), and certificate downloads that see `Link: rel="alternate"` chains (§7.4.2).
//!
//! [`AccountKey`] signs with the account's ES256 key under its `kid` (the account URL);
//! [`RawClient`] keeps a small pool of nonces and retries a request the CA refused with
//! `badNonce` with the fresh nonce from the refusal, like instant-acme does.

use std::sync::Mutex;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, LINK, RETRY_AFTER};
use http::{HeaderMap, Method, Request, StatusCode};
use instant_acme::{BodyWrapper, HttpClient};

use crate::error::{AcmeError, Problem, error_chain};
use crate::http::CaClient;

/// Attempts of one request when the CA keeps answering badNonce.
pub const BAD_NONCE_ATTEMPTS: u32 = 3;
/// Nonces kept for later requests (RFC 8555 §7.2: each response carries a fresh one).
const NONCE_POOL: usize = 32;
/// Largest response body read from a CA.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const REPLAY_NONCE: &str = "replay-nonce";
const JOSE_JSON: &str = "application/jose+json";

/// The account's private key and its key id, for signing requests (RFC 8555 §6.2).
pub struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    /// The PKCS#8 DER the pair was read from (wiped on drop), to make another signer.
    pkcs8: Vec<u8>,
}

impl Drop for AccountKey {
    fn drop(&mut self) {
        self.pkcs8.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.pkcs8);
    }
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AccountKey {
    /// A signer from the account's PKCS#8 DER key (ECDSA P-256) and its URL.
    pub fn new(pkcs8_der: &[u8], kid: impl Into<String>) -> Result<Self, AcmeError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der)
            .map_err(|e| AcmeError::Key(format!("reading the account key: {e}")))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
            kid: kid.into(),
            pkcs8: pkcs8_der.to_vec(),
        })
    }

    /// Another signer for the same key and account.
    pub fn duplicate(&self) -> Result<Self, AcmeError> {
        Self::new(&self.pkcs8, self.kid.clone())
    }

    /// A fresh ECDSA P-256 key for account `kid`, with its PKCS#8 DER (for the store).
    pub fn generate(kid: impl Into<String>) -> Result<(Self, Vec<u8>), AcmeError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AcmeError::Key("generating an account key failed".into()))?;
        let der = pkcs8.as_ref().to_vec();
        Ok((Self::new(&der, kid)?, der))
    }

    /// The account URL (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RFC 7517; P-256 coordinates, RFC 7518 §6.2.1), members in
    /// the lexicographic order RFC 7638 hashes them in.
    pub fn jwk_json(&self) -> String {
        // The public key is the uncompressed point 0x04 || X || Y (32 bytes each).
        let point = self.pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(x),
            URL_SAFE_NO_PAD.encode(y)
        )
    }

    /// The JWK thumbprint (RFC 7638, SHA-256, base64url): names the key without showing it.
    pub fn thumbprint(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.jwk_json().as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The inner JWS of a key change (RFC 8555 §7.3.5), signed by this (new) key with its JWK
    /// in the header and no nonce: `{"account": account_url, "oldKey": old JWK}` for `url`.
    pub fn key_change_jws(
        &self,
        url: &str,
        account_url: &str,
        old: &AccountKey,
    ) -> Result<serde_json::Value, AcmeError> {
        let jwk: serde_json::Value = serde_json::from_str(&self.jwk_json())
            .map_err(|e| AcmeError::Key(format!("building the JWK: {e}")))?;
        let old_jwk: serde_json::Value = serde_json::from_str(&old.jwk_json())
            .map_err(|e| AcmeError::Key(format!("building the JWK: {e}")))?;
        let header = serde_json::json!({"alg": "ES256", "jwk": jwk, "url": url});
        let payload = serde_json::json!({"account": account_url, "oldKey": old_jwk});
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let signature = self
            .pair
            .sign(&self.rng, format!("{protected}.{payload}").as_bytes())
            .map_err(|_| AcmeError::Key("signing the key change failed".into()))?;
        Ok(serde_json::json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        }))
    }

    /// A flattened JWS (RFC 7515 §7.2.2) for `url`; `payload` None is POST-as-GET (§6.3).
    fn sign(&self, url: &str, nonce: &str, payload: Option<&[u8]>) -> Result<Vec<u8>, AcmeError> {
        let header =
            serde_json::json!({"alg": "ES256", "kid": self.kid, "nonce": nonce, "url": url});
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let payload = payload
            .map(|p| URL_SAFE_NO_PAD.encode(p))
            .unwrap_or_default();
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| AcmeError::Key("signing a request failed".into()))?;
        let body = serde_json::json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        });
        Ok(body.to_string().into_bytes())
    }
}

/// A CA's answer with the headers certfleet reads.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawResponse {
    /// The `Retry-After` header as sent (seconds or an HTTP date), if any.
    pub fn retry_after(&self) -> Option<&str> {
        self.headers.get(RETRY_AFTER)?.to_str().ok()
    }

    /// Targets of `Link` headers with `rel="<rel>"` (RFC 8288), in the order sent.
    pub fn links(&self, rel: &str) -> Vec<String> {
        self.headers
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|link| parse_link(link, rel))
            .collect()
    }

    /// The problem document of an error answer (status 4xx/5xx), or `Ok(self)`.
    pub fn check(self) -> Result<Self, AcmeError> {
        if self.status.is_client_error() || self.status.is_server_error() {
            return Err(AcmeError::Problem(problem_from(self.status, &self.body)));
        }
        Ok(self)
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| AcmeError::BadResponse(format!("invalid JSON from the CA: {e}")))
    }
}

/// One `<url>; rel="x"` element of a Link header, if its relation is `rel`.
fn parse_link(link: &str, rel: &str) -> Option<String> {
    let (target, params) = link.trim().split_once(';')?;
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let wanted = params.split(';').any(|p| {
        let p = p.trim();
        p.strip_prefix("rel=")
            .map(|v| v.trim_matches('"'))
            .is_some_and(|v| v.split_whitespace().any(|r| r.eq_ignore_ascii_case(rel)))
    });
    wanted.then(|| target.to_string())
}

/// The problem document in an error answer; a synthetic one when the body is not one.
pub fn problem_from(status: StatusCode, body: &[u8]) -> Problem {
    match serde_json::from_slice::<instant_acme::Problem>(body) {
        Ok(p) => {
            let mut p = Problem::from(p);
            p.status = p.status.or(Some(status.as_u16()));
            p
        }
        Err(_) => Problem {
            kind: None,
            detail: Some(format!("HTTP {status} without a problem document")),
            status: Some(status.as_u16()),
            subproblems: Vec::new(),
        },
    }
}

/// Sends certfleet's own signed requests to one CA.
pub struct RawClient {
    http: CaClient,
    new_nonce: String,
    nonces: Mutex<Vec<String>>,
}

impl RawClient {
    /// A client for the CA whose `newNonce` resource is at `new_nonce`.
    pub fn new(http: CaClient, new_nonce: String) -> Self {
        Self {
            http,
            new_nonce,
            nonces: Mutex::new(Vec::new()),
        }
    }

    /// POST-as-GET `url` (RFC 8555 §6.3); the answer whatever its status.
    pub async fn post_as_get(&self, key: &AccountKey, url: &str) -> Result<RawResponse, AcmeError> {
        self.post(key, url, None).await
    }

    /// POST `payload` (JSON) to `url`, signed by `key`; the answer whatever its status.
    pub async fn post(
        &self,
        key: &AccountKey,
        url: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<RawResponse, AcmeError> {
        let payload = payload.map(|p| p.to_string().into_bytes());
        let mut attempt = 1;
        loop {
            let nonce = self.nonce().await?;
            let body = key.sign(url, &nonce, payload.as_deref())?;
            let request = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header(CONTENT_TYPE, JOSE_JSON)
                .body(BodyWrapper::from(body))
                .map_err(|e| AcmeError::BadResponse(format!("URL {url:?} from the CA: {e}")))?;
            let response = self.send(request).await?;
            let bad_nonce = response.status == StatusCode::BAD_REQUEST
                && problem_from(response.status, &response.body).short_type() == Some("badNonce");
            if bad_nonce && attempt < BAD_NONCE_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return Ok(response);
        }
    }

    /// A plain GET (directory, renewal information).
    pub async fn get(&self, url: &str) -> Result<RawResponse, AcmeError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .body(BodyWrapper::default())
            .map_err(|e| AcmeError::BadResponse(format!("URL {url:?}: {e}")))?;
        self.send(request).await
    }

    async fn nonce(&self) -> Result<String, AcmeError> {
        if let Some(nonce) = self.nonces.lock().ok().and_then(|mut pool| pool.pop()) {
            return Ok(nonce);
        }
        let request = Request::builder()
            .method(Method::HEAD)
            .uri(&self.new_nonce)
            .body(BodyWrapper::default())
            .map_err(|e| AcmeError::BadResponse(format!("newNonce URL: {e}")))?;
        let response = self.send(request).await?;
        if !response.status.is_success() {
            return Err(AcmeError::Problem(problem_from(
                response.status,
                &response.body,
            )));
        }
        self.nonces
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .ok_or_else(|| AcmeError::BadResponse("the CA's newNonce answer has no nonce".into()))
    }

    async fn send(&self, request: Request<BodyWrapper<Bytes>>) -> Result<RawResponse, AcmeError> {
        let url = request.uri().to_string();
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| AcmeError::Transport(format!("{url}: {}", error_chain(&e))))?;
        let (parts, mut body) = (response.parts, response.body);
        let body = body
            .into_bytes()
            .await
            .map_err(|e| AcmeError::Transport(format!("{url}: reading the answer: {e}")))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(AcmeError::BadResponse(format!(
                "{url} answered with {} bytes; the limit is {MAX_RESPONSE_BYTES}",
                body.len()
            )));
        }
        let nonce = parts
            .headers
            .get(REPLAY_NONCE)
            .and_then(|v| v.to_str().ok());
        if let (Some(nonce), Ok(mut pool)) = (nonce, self.nonces.lock()) {
            if pool.len() >= NONCE_POOL {
                pool.remove(0);
            }
            pool.push(nonce.to_string());
        }
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            "<https://ca.test/cert/1/1>;rel=\"alternate\""
                .parse()
                .unwrap(),
        );
        headers.append(
            LINK,
            "<https://ca.test/dir>;rel=\"index\", <https://ca.test/cert/1/2> ; rel=alternate"
                .parse()
                .unwrap(),
        );
        let rsp = RawResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
        assert_eq!(
            rsp.links("alternate"),
            ["https://ca.test/cert/1/1", "https://ca.test/cert/1/2"]
        );
        assert_eq!(rsp.links("index"), ["https://ca.test/dir"]);
        assert!(rsp.links("up").is_empty());
    }

    #[test]
    fn problems_from_bodies() {
        let p = problem_from(
            StatusCode::BAD_REQUEST,
            br#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}"#,
        );
        assert_eq!(p.short_type(), Some("badNonce"));
        assert_eq!(p.status, Some(400));
        let p = problem_from(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>");
        assert_eq!(p.short_type(), None);
        assert_eq!(p.status, Some(503));
        assert!(p.is_retryable());
    }

    #[test]
    fn thumbprint_of_rfc_7638_shape() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = AccountKey::new(pkcs8.as_ref(), "https://ca.test/acct/1").unwrap();
        let jwk: serde_json::Value = serde_json::from_str(&key.jwk_json()).unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(
            key.jwk_json().starts_with(r#"{"crv":"#),
            "members in RFC 7638 order"
        );
        assert_eq!(key.thumbprint().len(), 43, "base64url of 32 bytes");
        let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let other = AccountKey::new(other.as_ref(), "https://ca.test/acct/1").unwrap();
        assert_ne!(key.thumbprint(), other.thumbprint());
        let inner = other
            .key_change_jws("https://ca.test/key-change", "https://ca.test/acct/1", &key)
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(inner["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(header.get("nonce").is_none() && header.get("kid").is_none());
        assert_eq!(header["url"], "https://ca.test/key-change");
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(inner["payload"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["oldKey"], jwk);
        assert_eq!(payload["account"], "https://ca.test/acct/1");
    }

    #[test]
    fn signatures_verify() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = AccountKey::new(pkcs8.as_ref(), "https://ca.test/acct/1").unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&key.sign("https://ca.test/x", "n0", None).unwrap()).unwrap();
        assert_eq!(body["payload"], "", "POST-as-GET has an empty payload");
        let protected = body["protected"].as_str().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
        assert_eq!(header["kid"], "https://ca.test/acct/1");
        assert_eq!(header["nonce"], "n0");
        let sig = URL_SAFE_NO_PAD
            .decode(body["signature"].as_str().unwrap())
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key().as_ref())
            .verify(format!("{protected}.").as_bytes(), &sig)
            .expect("the signature verifies");
    }
}
