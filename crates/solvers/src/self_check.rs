//! The HTTP-01 self-check: before the CA is told "ready", ask each configured responder (the
//! nodes behind the load balancer, a remote `certfleet responder`) for every token, with the
//! identifier as Host, until each serves the exact key authorization (DESIGN.md §4: the CA is
//! told only once the response is confirmed visible).

use std::time::{Duration, Instant};

use bytes::Bytes;
use certfleet_core::PendingChallenge;
use http::Method;

use crate::api_client::ApiClient;
use crate::error::Error;
use crate::responder::CHALLENGE_PREFIX;

/// Default bound on the whole check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between polls of a responder that did not serve the token yet.
pub const POLL: Duration = Duration::from_millis(50);

/// Responders to check, by base URL (`http://10.0.0.2:80`).
#[derive(Debug, Clone)]
pub struct SelfCheck {
    urls: Vec<String>,
    timeout: Duration,
    client: ApiClient,
}

impl SelfCheck {
    /// A check of `urls`, each `http://` or `https://` with a host; the error names the field.
    pub fn new(field: &str, urls: Vec<String>, timeout: Duration) -> Result<Self, Error> {
        for (i, u) in urls.iter().enumerate() {
            let parsed: http::Uri = u.parse().map_err(|_| {
                Error::config(format!("{field}[{i}]"), format!("{u:?} is not a URL"))
            })?;
            let ok =
                matches!(parsed.scheme_str(), Some("http" | "https")) && parsed.host().is_some();
            if !ok {
                return Err(Error::config(
                    format!("{field}[{i}]"),
                    format!("{u:?} is not an http:// or https:// URL such as http://10.0.0.2:80"),
                ));
            }
        }
        Ok(Self {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            timeout,
            client: ApiClient::new(Duration::from_secs(5))?,
        })
    }

    /// Wait until every responder serves every challenge; the error names what never did.
    pub async fn wait(&self, challenges: &[PendingChallenge]) -> Result<(), Error> {
        let started = Instant::now();
        for url in &self.urls {
            for c in challenges {
                let target = format!("{url}{CHALLENGE_PREFIX}{}", c.token);
                loop {
                    let rsp = self
                        .client
                        .call(
                            Method::GET,
                            &target,
                            &[("Host", c.identifier.clone())],
                            Bytes::new(),
                        )
                        .await;
                    let served = matches!(&rsp, Ok(r) if r.status.is_success() && r.body == c.key_authorization.expose().as_bytes());
                    if served {
                        break;
                    }
                    if started.elapsed() >= self.timeout {
                        let seen = match rsp {
                            Ok(r) => format!("HTTP {}", r.status.as_u16()),
                            Err(e) => e,
                        };
                        return Err(Error::SelfCheck(format!(
                            "{url} did not serve the response for {} within {} s (last: {seen})",
                            c.identifier,
                            self.timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }
}
