//! The `acme-dns` provider: the [acme-dns](https://github.com/joohoi/acme-dns) HTTP API.
//!
//! The zone's owner creates, once, a CNAME from `_acme-challenge.<domain>` to the account's
//! `fulldomain` (printed by `certfleet dns acme-dns register`). certfleet then holds a
//! credential that can change that one TXT record and nothing else:
//!
//! - `POST {api}/register` (optional body `{"allowfrom": [...]}`) → `201` with `username`,
//!   `password`, `fulldomain`, `subdomain`;
//! - `POST {api}/update` with headers `X-Api-User`, `X-Api-Key` and body
//!   `{"subdomain": "...", "txt": "<43 characters>"}` → `200 {"txt": "..."}`.
//!
//! acme-dns has no delete call: it keeps the two newest values per subdomain (enough for a
//! wildcard and its apex) and they are harmless once used, so cleanup does nothing.
//! Accounts live in a JSON credentials file, one entry per domain, in the format the acme-dns
//! plugins of certbot and lego read:
//! `{"example.com": {"username", "password", "fulldomain", "subdomain", "server_url"}}`.
//!
//! Tested against a local HTTP server that checks the documented contract; the real acme-dns
//! service is not reachable from the test machines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};

use super::{DnsProvider, TxtRecord};
use crate::api_client::{ApiClient, check_base_url};
use crate::error::Error;

const PROVIDER: &str = "acme-dns";

/// One acme-dns account (what `/register` returns).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcmeDnsAccount {
    /// `X-Api-User`.
    pub username: String,
    /// `X-Api-Key`.
    pub password: String,
    /// Where the CNAME must point (`<uuid>.auth.example.org`).
    pub fulldomain: String,
    /// The account's subdomain.
    pub subdomain: String,
    /// The API the account belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
}

impl std::fmt::Debug for AcmeDnsAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeDnsAccount")
            .field("username", &self.username)
            .field("fulldomain", &self.fulldomain)
            .finish_non_exhaustive()
    }
}

/// Accounts by domain, as stored in the credentials file.
pub type Accounts = BTreeMap<String, AcmeDnsAccount>;

/// Read a credentials file; a missing file is an empty map.
pub fn read_accounts(path: &Path) -> Result<Accounts, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            Error::config(
                "credentials_file",
                format!("{}: not an acme-dns credentials file: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::new()),
        Err(e) => Err(Error::config(
            "credentials_file",
            format!("{}: {e}", path.display()),
        )),
    }
}

/// Settings of an `acme-dns` provider.
#[derive(Debug, Clone)]
pub struct AcmeDnsSettings {
    /// Base URL of the API (`https://auth.example.org`).
    pub api_url: String,
    /// The credentials file.
    pub credentials_file: PathBuf,
}

/// The provider.
pub struct AcmeDns {
    api: String,
    accounts: Accounts,
    client: ApiClient,
}

impl AcmeDns {
    /// Read the credentials and build the provider (fields named under `prefix`).
    pub fn new(prefix: &str, settings: &AcmeDnsSettings, client: ApiClient) -> Result<Self, Error> {
        let api = check_base_url(&format!("{prefix}api_url"), &settings.api_url)?;
        let accounts = read_accounts(&settings.credentials_file).map_err(|e| match e {
            Error::Config { message, .. } => {
                Error::config(format!("{prefix}credentials_file"), message)
            }
            other => other,
        })?;
        if accounts.is_empty() {
            return Err(Error::config(
                format!("{prefix}credentials_file"),
                format!(
                    "{} holds no account; create one with `certfleet dns acme-dns register --api {api} --domain DOMAIN --credentials {}`",
                    settings.credentials_file.display(),
                    settings.credentials_file.display()
                ),
            ));
        }
        Ok(Self {
            api,
            accounts,
            client,
        })
    }

    fn account(&self, domain: &str) -> Result<&AcmeDnsAccount, Error> {
        self.accounts.get(domain).ok_or_else(|| Error::Api {
            provider: PROVIDER,
            message: format!(
                "no account for {domain} in the credentials file; register one with `certfleet dns acme-dns register --domain {domain}`"
            ),
        })
    }
}

#[async_trait]
impl DnsProvider for AcmeDns {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    fn follows_cname(&self) -> bool {
        false
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), Error> {
        let account = self.account(&record.domain)?;
        let body = serde_json::json!({"subdomain": account.subdomain, "txt": record.value});
        let url = format!("{}/update", self.api);
        let rsp = self
            .client
            .call(
                Method::POST,
                &url,
                &[
                    ("X-Api-User", account.username.clone()),
                    ("X-Api-Key", account.password.clone()),
                    ("Content-Type", "application/json".into()),
                ],
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(|e| Error::Api {
                provider: PROVIDER,
                message: format!("POST {url}: {e}"),
            })?;
        if rsp.status.is_success() {
            return Ok(());
        }
        let hint = if rsp.status == http::StatusCode::UNAUTHORIZED {
            " (the account's username or password is refused, or this address is not in its allowfrom)"
        } else {
            ""
        };
        Err(Error::Api {
            provider: PROVIDER,
            message: format!(
                "POST {url} for {}: HTTP {}{hint}: {}",
                record.domain,
                rsp.status.as_u16(),
                rsp.text(200)
            ),
        })
    }

    async fn cleanup(&self, _record: &TxtRecord) -> Result<(), Error> {
        // acme-dns has no delete; it keeps only the two newest values (module docs).
        Ok(())
    }
}

/// Register a new account at `api` (`POST /register`); `allow_from` lists the networks
/// allowed to update it (CIDR), empty for any.
pub async fn register(
    client: &ApiClient,
    api: &str,
    allow_from: &[String],
) -> Result<AcmeDnsAccount, Error> {
    let api = check_base_url("--api", api)?;
    let url = format!("{api}/register");
    let body = if allow_from.is_empty() {
        "{}".to_string()
    } else {
        serde_json::json!({ "allowfrom": allow_from }).to_string()
    };
    let rsp = client
        .call(
            Method::POST,
            &url,
            &[("Content-Type", "application/json".into())],
            Bytes::from(body),
        )
        .await
        .map_err(|e| Error::Api {
            provider: PROVIDER,
            message: format!("POST {url}: {e}"),
        })?;
    if !rsp.status.is_success() {
        return Err(Error::Api {
            provider: PROVIDER,
            message: format!(
                "POST {url}: HTTP {}: {}",
                rsp.status.as_u16(),
                rsp.text(200)
            ),
        });
    }
    let mut account: AcmeDnsAccount =
        serde_json::from_slice(&rsp.body).map_err(|e| Error::Api {
            provider: PROVIDER,
            message: format!("POST {url}: the answer is not an acme-dns account: {e}"),
        })?;
    account.server_url = Some(api);
    Ok(account)
}
