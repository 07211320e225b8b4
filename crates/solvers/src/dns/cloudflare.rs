//! The `cloudflare` provider: Cloudflare's v4 API with an API token
//! (`Authorization: Bearer <token>`), which Cloudflare lets you scope to "Zone / DNS / Edit" on
//! one zone.
//!
//! - Zone: `zone_id` from the config, or `GET /zones?name=<candidate>` for the record's name
//!   and each parent until one matches (the token then also needs "Zone / Zone / Read").
//! - Present: `POST /zones/{zone_id}/dns_records` with
//!   `{"type":"TXT","name":"_acme-challenge.example.com","content":"\"<value>\"","ttl":120}`
//!   (TXT content as quoted character-strings, as the API documents).
//! - Cleanup: `GET /zones/{zone_id}/dns_records?type=TXT&name=<name>`, then
//!   `DELETE /zones/{zone_id}/dns_records/{id}` for each record holding our value, so cleanup
//!   needs nothing remembered and works after a restart.
//!
//! Answers are the `{"success", "errors": [{"code", "message"}], "result"}` envelope.
//! Tested against a local HTTP server checking this documented contract only; the real API is
//! not reachable from the test machines.

use async_trait::async_trait;
use bytes::Bytes;
use certfleet_core::Secret;
use http::Method;
use serde_json::Value;

use super::{DnsProvider, TxtRecord};
use crate::api_client::{ApiClient, ApiResponse, check_base_url};
use crate::error::Error;

const PROVIDER: &str = "cloudflare";
/// Cloudflare's API.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// Environment variable read when the config has no `api_token`.
pub const TOKEN_ENV: &str = "CLOUDFLARE_API_TOKEN";
/// TTL of published records (Cloudflare's minimum besides "automatic").
pub const TTL: u32 = 120;

/// Settings of a `cloudflare` provider.
#[derive(Debug, Clone)]
pub struct CloudflareSettings {
    /// API base URL.
    pub api_url: String,
    /// The API token.
    pub api_token: Secret,
    /// The zone's id; `None`: looked up by name.
    pub zone_id: Option<String>,
}

/// The provider.
pub struct Cloudflare {
    api: String,
    token: Secret,
    zone_id: Option<String>,
    client: ApiClient,
}

fn api_error(message: String) -> Error {
    Error::Api {
        provider: PROVIDER,
        message,
    }
}

impl Cloudflare {
    /// Check the settings (fields named under `prefix`) and build the provider.
    pub fn new(
        prefix: &str,
        settings: CloudflareSettings,
        client: ApiClient,
    ) -> Result<Self, Error> {
        let api = check_base_url(&format!("{prefix}api_url"), &settings.api_url)?;
        if settings.api_token.expose().trim().is_empty() {
            return Err(Error::config(
                format!("{prefix}api_token"),
                format!("is empty; set it or the {TOKEN_ENV} environment variable"),
            ));
        }
        if let Some(id) = &settings.zone_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(Error::config(
                format!("{prefix}zone_id"),
                format!("{id:?} is not a Cloudflare zone id"),
            ));
        }
        Ok(Self {
            api,
            token: settings.api_token,
            zone_id: settings.zone_id,
            client,
        })
    }

    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}{path_and_query}", self.api);
        let mut headers = vec![("Authorization", format!("Bearer {}", self.token.expose()))];
        let body = match body {
            Some(v) => {
                headers.push(("Content-Type", "application/json".to_string()));
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let what = format!(
            "{method} {}",
            path_and_query.split('?').next().unwrap_or(path_and_query)
        );
        let rsp = self
            .client
            .call(method, &url, &headers, body)
            .await
            .map_err(|e| api_error(format!("{what}: {e}")))?;
        envelope(&what, &rsp)
    }

    async fn zone(&self, name: &str) -> Result<String, Error> {
        if let Some(id) = &self.zone_id {
            return Ok(id.clone());
        }
        let labels: Vec<&str> = name.split('.').collect();
        for i in 1..labels.len().saturating_sub(1) {
            let candidate = labels[i..].join(".");
            let result = self
                .request(Method::GET, &format!("/zones?name={candidate}"), None)
                .await?;
            if let Some(id) = result
                .as_array()
                .and_then(|a| a.first())
                .and_then(|z| z["id"].as_str())
            {
                return Ok(id.to_string());
            }
        }
        Err(api_error(format!(
            "no zone of this token contains {name}; set zone_id"
        )))
    }
}

/// Unwrap Cloudflare's envelope, turning `errors` into a message.
fn envelope(what: &str, rsp: &ApiResponse) -> Result<Value, Error> {
    let json: Value = serde_json::from_slice(&rsp.body).map_err(|_| {
        api_error(format!(
            "{what}: HTTP {}: {}",
            rsp.status.as_u16(),
            rsp.text(200)
        ))
    })?;
    if rsp.status.is_success() && json["success"].as_bool() == Some(true) {
        return Ok(json["result"].clone());
    }
    let errors: Vec<String> = json["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} (code {})",
                        e["message"].as_str().unwrap_or("?"),
                        e["code"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Err(api_error(format!(
        "{what}: HTTP {}: {}",
        rsp.status.as_u16(),
        if errors.is_empty() {
            rsp.text(200)
        } else {
            errors.join("; ")
        }
    )))
}

#[async_trait]
impl DnsProvider for Cloudflare {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), Error> {
        let zone = self.zone(&record.name).await?;
        let body = serde_json::json!({
            "type": "TXT",
            "name": record.name,
            "content": format!("\"{}\"", record.value),
            "ttl": TTL,
        });
        self.request(
            Method::POST,
            &format!("/zones/{zone}/dns_records"),
            Some(body),
        )
        .await?;
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), Error> {
        let zone = self.zone(&record.name).await?;
        let list = self
            .request(
                Method::GET,
                &format!("/zones/{zone}/dns_records?type=TXT&name={}", record.name),
                None,
            )
            .await?;
        let quoted = format!("\"{}\"", record.value);
        let ids: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                let content = r["content"].as_str().unwrap_or_default();
                content == quoted || content == record.value
            })
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        for id in ids {
            self.request(
                Method::DELETE,
                &format!("/zones/{zone}/dns_records/{id}"),
                None,
            )
            .await?;
        }
        Ok(())
    }
}
