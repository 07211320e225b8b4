//! The ACME account's life (`certfleet account ...`): one account per issuer, kept for good.
//!
//! | method | path                                   | what                                   |
//! |--------|----------------------------------------|----------------------------------------|
//! | GET    | `/api/v1/accounts`                     | every issuer's account ([`AccountView`]) |
//! | POST   | `/api/v1/accounts/{issuer}/contacts`   | set the contacts at the CA now (RFC 8555 §7.3.2) |
//! | POST   | `/api/v1/accounts/{issuer}/rollover`   | a new account key (RFC 8555 §7.3.5)    |
//!
//! The work is done by the issuer ([`certfleet_acme::contacts`],
//! [`certfleet_acme::rollover`]); a refusal by the CA is answered as `ca-refused` with the
//! CA's words. Contacts set here override the configured ones until the configuration's
//! contacts change (see [`certfleet_acme::contacts`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use certfleet_acme::rollover::{ACCOUNT_KEY_TYPE, current_key, next_key};
use certfleet_acme::{AcmeError, AcmeIssuer};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::problem::ApiError;
use crate::views::rfc3339;

/// The routes of this module.
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1/accounts", get(list))
        .route("/api/v1/accounts/{issuer}/contacts", post(update_contacts))
        .route("/api/v1/accounts/{issuer}/rollover", post(rollover))
}

/// One issuer's ACME account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountView {
    /// Issuer name.
    pub issuer: String,
    /// ACME directory URL.
    pub directory: String,
    /// The account URL (`null` until the account is registered, at the first use).
    pub account_url: Option<String>,
    /// The contacts the CA confirmed at the last update or start-up.
    pub contacts: Vec<String>,
    /// The contacts in the configuration.
    pub configured_contacts: Vec<String>,
    /// Contacts set with `account update` that rule over the configured ones, if any.
    pub contacts_override: Option<OverrideView>,
    /// The account key's type (`ecdsa-p256`).
    pub key_type: Option<String>,
    /// The account key's JWK thumbprint (RFC 7638, SHA-256, base64url).
    pub key_thumbprint: Option<String>,
    /// When the account was registered (RFC 3339).
    pub created_at: Option<String>,
    /// A key rollover was interrupted; the next use asks the CA which key it holds.
    pub rollover_pending: bool,
}

/// Contacts set by `account update`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverrideView {
    /// The contacts.
    pub contacts: Vec<String>,
    /// The configured contacts when they were set; once the configuration says otherwise,
    /// it rules again.
    pub configured_then: Vec<String>,
    /// When they were set (RFC 3339).
    pub set_at: String,
}

/// The body of `POST /api/v1/accounts/{issuer}/contacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateContacts {
    /// `mailto:` URLs; an empty list removes every contact.
    pub contacts: Vec<String>,
}

/// The answer of a contacts update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContactsUpdated {
    /// The account after the update.
    pub account: AccountView,
    /// The contacts the CA held before.
    pub before: Vec<String>,
    /// Whether the new contacts are the configured ones (nothing overrides the configuration).
    pub follows_configuration: bool,
}

/// The answer of a key rollover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolledOverView {
    /// The account after the rollover (same URL, new key).
    pub account: AccountView,
    /// Thumbprint of the key replaced.
    pub old_thumbprint: String,
    /// The CA's answer was lost; asking it showed the new key in place.
    pub answer_lost: bool,
}

async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<AccountView>>, ApiError> {
    let mut out = Vec::new();
    for name in app.issuer_settings.keys() {
        out.push(view(&app, name).await?);
    }
    Ok(Json(out))
}

/// The account of issuer `name` as stored.
async fn view(app: &App, name: &str) -> Result<AccountView, ApiError> {
    let settings = &app.issuer_settings[name];
    let account = app.store.account(name, &settings.directory).await?;
    let over = app
        .store
        .contacts_override(name, &settings.directory)
        .await?;
    let key = account.as_ref().map(current_key).transpose();
    let key = key.unwrap_or_else(|e| {
        tracing::error!(issuer = name, error = %e, "the stored account key does not read");
        None
    });
    Ok(AccountView {
        issuer: name.to_string(),
        directory: settings.directory.clone(),
        account_url: account.as_ref().map(|a| a.account_url.clone()),
        contacts: account
            .as_ref()
            .map(|a| a.contacts.clone())
            .unwrap_or_default(),
        configured_contacts: settings.contacts.clone(),
        contacts_override: over.map(|o| OverrideView {
            contacts: o.contacts,
            configured_then: o.configured,
            set_at: rfc3339(o.set_at),
        }),
        key_type: key.as_ref().map(|_| ACCOUNT_KEY_TYPE.to_string()),
        key_thumbprint: key.as_ref().map(|k| k.thumbprint()),
        created_at: account.as_ref().map(|a| rfc3339(a.created_at)),
        rollover_pending: account
            .as_ref()
            .is_some_and(|a| next_key(a.credentials.expose()).is_some()),
    })
}

fn issuer<'a>(app: &'a App, name: &str) -> Result<&'a Arc<AcmeIssuer>, ApiError> {
    app.issuers.get(name).ok_or_else(|| {
        let known: Vec<&str> = app.issuers.keys().map(String::as_str).collect();
        ApiError::not_found(format!(
            "no issuer named {name:?}; configured issuers: {}",
            known.join(", ")
        ))
    })
}

/// A failure talking to the CA: its refusal in its own words, or an unusable issuer.
fn ca_error(name: &str, directory: &str, doing: &str, e: AcmeError, field: &str) -> ApiError {
    match e {
        AcmeError::Problem(p) => {
            tracing::warn!(issuer = name, problem = %p, "the CA refused {doing}");
            ApiError::ca_refused(
                field,
                format!("the CA at {directory} refused {doing} for issuer {name}: {p}"),
            )
        }
        other => ApiError::issuer_unusable(format!("issuer {name:?}: {doing} failed: {other}")),
    }
}

async fn update_contacts(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<UpdateContacts>, JsonRejection>,
) -> Result<Json<ContactsUpdated>, ApiError> {
    let acme = issuer(&app, &name)?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    for (i, contact) in body.contacts.iter().enumerate() {
        crate::config::check_contact(&format!("contacts[{i}]"), contact)?;
    }
    if let Some(i) =
        (1..body.contacts.len()).find(|&i| body.contacts[..i].contains(&body.contacts[i]))
    {
        return Err(ApiError::invalid(
            format!("contacts[{i}]"),
            format!("{:?} is listed twice", body.contacts[i]),
        ));
    }
    let directory = &acme.config().directory_url;
    let update = acme
        .update_contacts(&body.contacts)
        .await
        .map_err(|e| ca_error(&name, directory, "the contacts", e, "contacts"))?;
    Ok(Json(ContactsUpdated {
        account: view(&app, &name).await?,
        before: update.before,
        follows_configuration: update.follows_configuration,
    }))
}

async fn rollover(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<RolledOverView>, ApiError> {
    let acme = issuer(&app, &name)?;
    let directory = &acme.config().directory_url;
    let done = acme
        .rollover()
        .await
        .map_err(|e| ca_error(&name, directory, "the key rollover", e, "issuer"))?;
    Ok(Json(RolledOverView {
        account: view(&app, &name).await?,
        old_thumbprint: done.old_thumbprint,
        answer_lost: done.answer_lost,
    }))
}
