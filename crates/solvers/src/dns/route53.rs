//! The `route53` provider: the Amazon Route 53 REST API (version 2013-04-01), every request
//! signed with SigV4 ([`super::sigv4`], service `route53`, region `us-east-1`).
//!
//! Scoped to one hosted zone (`hosted_zone_id`), so an IAM policy can allow
//! `route53:ChangeResourceRecordSets` and `route53:ListResourceRecordSets` on that zone only
//! (plus `route53:GetChange`). A TXT record set holds every value at a name (a wildcard and its
//! apex share one), so changes read the set first:
//!
//! - `GET /2013-04-01/hostedzone/{id}/rrset?name=<name>.&type=TXT&maxitems=1`;
//! - `POST /2013-04-01/hostedzone/{id}/rrset` with a `ChangeResourceRecordSetsRequest`: `UPSERT`
//!   of the set with our value added (present) or removed (cleanup), `DELETE` of the exact set
//!   when ours was the last value;
//! - `GET /2013-04-01/change/{id}` until `INSYNC`.
//!
//! Credentials come from the config or `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`. Tested against a local HTTP server that checks the documented
//! contract and verifies the SigV4 signature; the real API is not reachable from the test
//! machines.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use tokio::sync::Mutex;

use super::sigv4::{self, Credentials, SignInput};
use super::{DnsProvider, TxtRecord};
use crate::api_client::{ApiClient, check_base_url};
use crate::error::Error;

const PROVIDER: &str = "route53";
/// Route 53's global endpoint.
pub const DEFAULT_API_URL: &str = "https://route53.amazonaws.com";
/// Route 53 signs in this region.
pub const REGION: &str = "us-east-1";
/// The API version in every path.
pub const API_VERSION: &str = "2013-04-01";
/// Default TTL of published records.
pub const DEFAULT_TTL: u32 = 60;
/// Time between `GetChange` polls.
pub const CHANGE_POLL: Duration = Duration::from_secs(2);
/// Bound on waiting for `INSYNC`.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(180);
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// Settings of a `route53` provider.
#[derive(Debug, Clone)]
pub struct Route53Settings {
    /// API base URL.
    pub api_url: String,
    /// The hosted zone (`Z1D633PJN98FT9`).
    pub hosted_zone_id: String,
    /// Credentials.
    pub credentials: Credentials,
    /// TTL of published records.
    pub ttl: u32,
    /// Time between `GetChange` polls.
    pub change_poll: Duration,
}

/// The provider.
pub struct Route53 {
    api: String,
    host: String,
    settings: Route53Settings,
    client: ApiClient,
    /// One change at a time: each reads and rewrites a whole record set.
    serial: Mutex<()>,
}

fn api_error(message: String) -> Error {
    Error::Api {
        provider: PROVIDER,
        message,
    }
}

impl Route53 {
    /// Check the settings (fields named under `prefix`) and build the provider.
    pub fn new(prefix: &str, settings: Route53Settings, client: ApiClient) -> Result<Self, Error> {
        let api = check_base_url(&format!("{prefix}api_url"), &settings.api_url)?;
        let zone = settings
            .hosted_zone_id
            .trim_start_matches("/hostedzone/")
            .to_string();
        if zone.is_empty() || !zone.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::config(
                format!("{prefix}hosted_zone_id"),
                format!(
                    "{:?} is not a hosted zone id such as Z1D633PJN98FT9",
                    settings.hosted_zone_id
                ),
            ));
        }
        if settings.credentials.access_key_id.is_empty()
            || settings.credentials.secret_access_key.expose().is_empty()
        {
            return Err(Error::config(
                format!("{prefix}access_key_id"),
                "credentials are missing: set access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        let host = api
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut settings = settings;
        settings.hosted_zone_id = zone;
        Ok(Self {
            api,
            host,
            settings,
            client,
            serial: Mutex::new(()),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<String>,
    ) -> Result<String, Error> {
        let amz_date = sigv4::amz_date(certfleet_core::time::now());
        let body = body.unwrap_or_default();
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if !body.is_empty() {
            headers.push(("content-type".to_string(), "text/xml".to_string()));
        }
        if let Some(token) = &self.settings.credentials.session_token {
            headers.push((
                "x-amz-security-token".to_string(),
                token.expose().to_string(),
            ));
        }
        let method_text = method.to_string();
        let authorization = sigv4::authorization(
            &self.settings.credentials,
            &SignInput {
                method: &method_text,
                path,
                query,
                headers: &headers,
                body: body.as_bytes(),
                amz_date: &amz_date,
                region: REGION,
                service: "route53",
            },
        );
        let url = if query.is_empty() {
            format!("{}{path}", self.api)
        } else {
            format!("{}{path}?{query}", self.api)
        };
        let mut send: Vec<(&str, String)> = headers
            .iter()
            .filter(|(k, _)| k != "host")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        send.push(("authorization", authorization));
        let what = format!("{method} {path}");
        let rsp = self
            .client
            .call(method, &url, &send, Bytes::from(body))
            .await
            .map_err(|e| api_error(format!("{what}: {e}")))?;
        let text = String::from_utf8_lossy(&rsp.body).into_owned();
        if rsp.status.is_success() {
            return Ok(text);
        }
        let code = xml_text(&text, "Code").unwrap_or_default();
        let message = xml_text(&text, "Message").unwrap_or_else(|| rsp.text(200));
        Err(api_error(format!(
            "{what}: HTTP {} {code}: {message}",
            rsp.status.as_u16()
        )))
    }

    /// The values (quoted, as Route 53 stores them) and TTL of the TXT set at `name`.
    async fn current(&self, name: &str) -> Result<(Vec<String>, Option<u32>), Error> {
        let path = format!(
            "/{API_VERSION}/hostedzone/{}/rrset",
            self.settings.hosted_zone_id
        );
        let query = format!(
            "maxitems=1&name={}&type=TXT",
            sigv4_query_value(&format!("{name}."))
        );
        let body = self.call(Method::GET, &path, &query, None).await?;
        let Some(set) = xml_blocks(&body, "ResourceRecordSet").into_iter().next() else {
            return Ok((Vec::new(), None));
        };
        let same_name = xml_text(set, "Name")
            .is_some_and(|n| n.trim_end_matches('.').eq_ignore_ascii_case(name));
        if !same_name || xml_text(set, "Type").as_deref() != Some("TXT") {
            return Ok((Vec::new(), None));
        }
        let ttl = xml_text(set, "TTL").and_then(|t| t.parse().ok());
        let values = xml_blocks(set, "ResourceRecord")
            .into_iter()
            .filter_map(|r| xml_text(r, "Value"))
            .collect();
        Ok((values, ttl))
    }

    async fn change(
        &self,
        action: &str,
        name: &str,
        ttl: u32,
        values: &[String],
    ) -> Result<(), Error> {
        let records: String = values
            .iter()
            .map(|v| {
                format!(
                    "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                    xml_escape(v)
                )
            })
            .collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\">\
             <ChangeBatch><Comment>certfleet dns-01</Comment><Changes><Change><Action>{action}</Action>\
             <ResourceRecordSet><Name>{}.</Name><Type>TXT</Type><TTL>{ttl}</TTL>\
             <ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change></Changes>\
             </ChangeBatch></ChangeResourceRecordSetsRequest>",
            xml_escape(name)
        );
        let path = format!(
            "/{API_VERSION}/hostedzone/{}/rrset",
            self.settings.hosted_zone_id
        );
        let answer = self.call(Method::POST, &path, "", Some(body)).await?;
        let id = xml_text(&answer, "Id")
            .ok_or_else(|| api_error(format!("POST {path}: no ChangeInfo Id in the answer")))?;
        self.wait_insync(&id).await
    }

    async fn wait_insync(&self, id: &str) -> Result<(), Error> {
        let id = id.trim_start_matches("/change/");
        let path = format!("/{API_VERSION}/change/{id}");
        let started = Instant::now();
        loop {
            let answer = self.call(Method::GET, &path, "", None).await?;
            if xml_text(&answer, "Status").as_deref() == Some("INSYNC") {
                return Ok(());
            }
            if started.elapsed() > CHANGE_TIMEOUT {
                return Err(api_error(format!(
                    "change {id} not INSYNC after {} s",
                    CHANGE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(self.settings.change_poll).await;
        }
    }
}

fn sigv4_query_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Inner text of the first `<tag>…</tag>`, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_blocks(xml, tag).into_iter().next().map(xml_unescape)
}

/// Inner text of every `<tag>…</tag>` (not nested in itself).
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[async_trait]
impl DnsProvider for Route53 {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), Error> {
        let _one = self.serial.lock().await;
        let (mut values, _) = self.current(&record.name).await?;
        let ours = format!("\"{}\"", record.value);
        if values.contains(&ours) {
            return Ok(());
        }
        values.push(ours);
        self.change("UPSERT", &record.name, self.settings.ttl, &values)
            .await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), Error> {
        let _one = self.serial.lock().await;
        let (values, ttl) = self.current(&record.name).await?;
        let ours = format!("\"{}\"", record.value);
        if !values.contains(&ours) {
            return Ok(());
        }
        let ttl = ttl.unwrap_or(self.settings.ttl);
        let rest: Vec<String> = values.iter().filter(|v| **v != ours).cloned().collect();
        if rest.is_empty() {
            self.change("DELETE", &record.name, ttl, &values).await
        } else {
            self.change("UPSERT", &record.name, ttl, &rest).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers() {
        let x = "<A><ResourceRecord><Value>&quot;v1&quot;</Value></ResourceRecord><ResourceRecord><Value>\"v2\"</Value></ResourceRecord></A>";
        let values: Vec<_> = xml_blocks(x, "ResourceRecord")
            .into_iter()
            .filter_map(|r| xml_text(r, "Value"))
            .collect();
        assert_eq!(values, ["\"v1\"", "\"v2\""]);
        assert_eq!(xml_escape("\"a&b\""), "&quot;a&amp;b&quot;");
    }
}
