//! The ACME account of an issuer (RFC 8555 §7.3): registered once, sealed in the store, and
//! kept in line with the configuration.
//!
//! - At start-up the stored account is read back from the CA (POST-as-GET, §7.3); when its
//!   contacts differ from the wanted ones — the configured contacts, or those a person set
//!   with `certfleet account update` ([`crate::contacts`]) — an update is sent (§7.3.2) and
//!   the contacts the CA confirmed are stored with the account (`account_updated` event).
//! - A key rollover left unfinished (both keys stored, [`crate::rollover`]) is settled
//!   before anything else: the key the CA holds is kept.
//! - When the CA no longer knows the account (`accountDoesNotExist`, or `unauthorized` about
//!   the account itself, as after a wiped staging database), a new account is registered
//!   with the same settings (contacts, EAB), stored, logged at warn level and recorded as an
//!   `account_reregistered` event. [`AcmeIssuer::replace_forgotten_account`] does this once
//!   per forgotten account even when several orders notice at the same time.

use std::collections::BTreeSet;
use std::sync::Arc;

use certfleet_core::{AccountRecord, EventDetails, EventKind, NewEvent, Secret};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::Deserialize;

use crate::error::{AcmeError, Problem};
use crate::issuer::{AcmeIssuer, BAD_NONCE_ORDER_RETRIES, decode_hmac};
use crate::jws::AccountKey;

/// A usable account: instant-acme's handle plus certfleet's own signer for the same key.
pub struct AccountState {
    /// instant-acme's account (orders, challenges, finalize).
    pub account: Account,
    /// The same key, for certfleet's own requests ([`crate::jws`]).
    pub key: AccountKey,
    /// The contacts the CA holds for the account.
    pub contacts: Vec<String>,
}

impl AccountState {
    /// The account URL.
    pub fn url(&self) -> &str {
        self.account.id()
    }
}

/// The account resource as the CA returns it (RFC 8555 §7.1.2).
#[derive(Debug, Deserialize)]
pub(crate) struct AccountObject {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) contact: Vec<String>,
}

/// Why an account is being registered.
enum Registration<'a> {
    /// None was stored.
    First,
    /// The CA no longer knows (or no longer accepts) the stored one.
    Replacing { old_url: &'a str, why: String },
}

/// Whether `problem` says the account in the request's `kid` is unknown or unusable.
pub fn means_account_gone(problem: &Problem) -> bool {
    match problem.short_type() {
        Some("accountDoesNotExist") => true,
        Some("unauthorized") => problem
            .detail
            .as_deref()
            .is_some_and(|d| d.to_ascii_lowercase().contains("account")),
        _ => false,
    }
}

pub(crate) fn same_contacts(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

impl AcmeIssuer {
    /// The account, loaded (and checked with the CA) or registered on first use.
    pub async fn account(&self) -> Result<Arc<AccountState>, AcmeError> {
        let mut slot = self.account_slot().lock().await;
        if let Some(state) = slot.as_ref() {
            return Ok(state.clone());
        }
        let state = Arc::new(self.load_or_register().await?);
        *slot = Some(state.clone());
        Ok(state)
    }

    /// The CA said it does not know the account of `stale` (the state an order used):
    /// register a new one with the same settings, unless another order already replaced it
    /// or its key was rolled over meanwhile (the slot then holds another state), or a key
    /// rollover whose answer was lost left a new key the CA does hold.
    pub async fn replace_forgotten_account(
        &self,
        stale: &Arc<AccountState>,
        why: &Problem,
    ) -> Result<Arc<AccountState>, AcmeError> {
        let mut slot = self.account_slot().lock().await;
        if let Some(state) = slot.as_ref().filter(|s| !Arc::ptr_eq(s, stale)) {
            return Ok(state.clone());
        }
        if let Some(state) = self.settle_pending_rollover().await? {
            let state = Arc::new(state);
            *slot = Some(state.clone());
            return Ok(state);
        }
        let registration = Registration::Replacing {
            old_url: stale.url(),
            why: why.to_string(),
        };
        let state = Arc::new(self.register(registration).await?);
        *slot = Some(state.clone());
        Ok(state)
    }

    pub(crate) async fn load_or_register(&self) -> Result<AccountState, AcmeError> {
        let cfg = self.config();
        let Some(mut record) = self.store().account(&cfg.name, &cfg.directory_url).await? else {
            return self.register(Registration::First).await;
        };
        if crate::rollover::next_key(record.credentials.expose()).is_some() {
            let (settled, known) = self.settle_rollover(record).await?;
            if !known {
                return self
                    .reregister_at_start(&settled.account_url, "the CA forgot the account".into())
                    .await;
            }
            record = settled;
        }
        let (account, key) = self
            .open_credentials(record.credentials.expose(), &record.account_url)
            .await?;
        let object = match self.account_object(&key).await {
            Ok(object) if object.status == "valid" => object,
            Ok(object) => {
                let why = format!("the CA reports the account as {}", object.status);
                return self.reregister_at_start(&record.account_url, why).await;
            }
            Err(AcmeError::Problem(p)) if means_account_gone(&p) => {
                return self
                    .reregister_at_start(&record.account_url, p.to_string())
                    .await;
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(issuer = %cfg.name, account = %record.account_url, "loaded ACME account");
        let mut state = AccountState {
            account,
            key,
            contacts: object.contact,
        };
        self.sync_contacts(&mut state, record).await?;
        Ok(state)
    }

    async fn reregister_at_start(
        &self,
        old_url: &str,
        why: String,
    ) -> Result<AccountState, AcmeError> {
        self.register(Registration::Replacing { old_url, why })
            .await
    }

    /// Send an account update when the CA's contacts differ from the wanted ones (the
    /// configured contacts, or those `account update` set while the configuration has not
    /// changed since; see [`crate::contacts`]), and store what the CA confirmed.
    async fn sync_contacts(
        &self,
        state: &mut AccountState,
        mut record: AccountRecord,
    ) -> Result<(), AcmeError> {
        let cfg = self.config();
        let (wanted, source) = self.wanted_contacts().await?;
        if !same_contacts(&state.contacts, &wanted) {
            let confirmed = self.send_contacts(&state.key, &wanted).await?;
            let message = format!(
                "contacts of ACME account {} changed from [{}] to [{}] to follow {source}",
                state.url(),
                state.contacts.join(", "),
                confirmed.join(", ")
            );
            tracing::info!(issuer = %cfg.name, "{message}");
            self.record_account_event(&message).await?;
            state.contacts = confirmed;
        }
        if record.contacts != state.contacts {
            record.contacts = state.contacts.clone();
            self.store().save_account(&record).await?;
        }
        Ok(())
    }

    /// Register a new account with the configured contacts and EAB, store it and record why.
    async fn register(&self, reason: Registration<'_>) -> Result<AccountState, AcmeError> {
        let cfg = self.config();
        let contacts: Vec<&str> = cfg.contacts.iter().map(String::as_str).collect();
        let eab = match &cfg.eab {
            Some(eab) => Some(ExternalAccountKey::new(
                eab.key_id.clone(),
                &decode_hmac(eab)?,
            )),
            None => None,
        };
        let new = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let mut attempt = 0;
        let (account, creds) = loop {
            let created = Account::builder_with_http(Box::new(self.client().clone()))
                .create(&new, cfg.directory_url.clone(), eab.as_ref())
                .await
                .map_err(|e| self.directory_error(e));
            match created {
                Err(e) if e.is_bad_nonce() && attempt < BAD_NONCE_ORDER_RETRIES => attempt += 1,
                other => break other?,
            }
        };
        let key = AccountKey::new(creds.private_key().secret_pkcs8_der(), account.id())?;
        let object = self.account_object(&key).await?;
        let credentials = serde_json::to_string(&creds)
            .map_err(|e| AcmeError::Config(format!("serializing account credentials: {e}")))?;
        self.store()
            .save_account(&AccountRecord {
                issuer: cfg.name.clone(),
                directory_url: cfg.directory_url.clone(),
                account_url: account.id().to_string(),
                credentials: Secret::new(credentials),
                created_at: certfleet_core::time::now(),
                contacts: object.contact.clone(),
            })
            .await?;
        match reason {
            Registration::First => {
                let message = format!(
                    "registered ACME account {} at {}",
                    account.id(),
                    cfg.directory_url
                );
                tracing::info!(issuer = %cfg.name, "{message}");
                self.record_issuer_event(EventKind::AccountCreated, &message)
                    .await?;
            }
            Registration::Replacing { old_url, why } => {
                let message = format!(
                    "the CA at {} no longer accepts ACME account {old_url} ({why}); registered \
                     account {} with the same settings",
                    cfg.directory_url,
                    account.id()
                );
                tracing::warn!(issuer = %cfg.name, "{message}");
                self.record_issuer_event(EventKind::AccountReregistered, &message)
                    .await?;
            }
        }
        Ok(AccountState {
            account,
            key,
            contacts: object.contact,
        })
    }

    /// The account object as the CA holds it (POST-as-GET, RFC 8555 §7.3).
    pub(crate) async fn account_object(
        &self,
        key: &AccountKey,
    ) -> Result<AccountObject, AcmeError> {
        let raw = self.raw().await?;
        raw.post_as_get(key, key.kid()).await?.check()?.json()
    }

    /// Send `contacts` as the account's contacts (RFC 8555 §7.3.2); the contacts the CA
    /// confirmed. A refusal (`invalidContact`, `unsupportedContact`) is the CA's problem.
    pub(crate) async fn send_contacts(
        &self,
        key: &AccountKey,
        contacts: &[String],
    ) -> Result<Vec<String>, AcmeError> {
        let payload = serde_json::json!({ "contact": contacts });
        let raw = self.raw().await?;
        let object: AccountObject = raw
            .post(key, key.kid(), Some(&payload))
            .await?
            .check()?
            .json()?;
        Ok(object.contact)
    }

    /// Record an `account_updated` event naming this issuer.
    pub(crate) async fn record_account_event(&self, message: &str) -> Result<(), AcmeError> {
        self.record_issuer_event(EventKind::AccountUpdated, message)
            .await
    }

    /// An account event with this issuer's name in its details.
    async fn record_issuer_event(&self, kind: EventKind, message: &str) -> Result<(), AcmeError> {
        let details = EventDetails {
            issuer: Some(self.config().name.clone()),
            ..EventDetails::default()
        };
        self.store()
            .record_event(&NewEvent::global(kind, message).with(details))
            .await?;
        Ok(())
    }

    /// instant-acme's account and certfleet's signer from stored credentials.
    pub(crate) async fn open_credentials(
        &self,
        credentials: &str,
        url: &str,
    ) -> Result<(Account, AccountKey), AcmeError> {
        let creds: AccountCredentials = serde_json::from_str(credentials)
            .map_err(|e| AcmeError::Config(format!("stored account is unreadable: {e}")))?;
        let key = AccountKey::new(creds.private_key().secret_pkcs8_der(), url)?;
        let account = Account::builder_with_http(Box::new(self.client().clone()))
            .from_credentials(creds)
            .await
            .map_err(|e| self.directory_error(e))?;
        Ok((account, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        Problem {
            kind: Some(format!("urn:ietf:params:acme:error:{kind}")),
            detail: Some(detail.into()),
            status: Some(400),
            subproblems: Vec::new(),
        }
    }

    #[test]
    fn which_problems_mean_the_account_is_gone() {
        assert!(means_account_gone(&problem(
            "accountDoesNotExist",
            "Account https://ca/acct/1 not found."
        )));
        assert!(means_account_gone(&problem(
            "unauthorized",
            "Account is not valid, has status \"deactivated\""
        )));
        assert!(!means_account_gone(&problem(
            "unauthorized",
            "Invalid response from http://a.example/.well-known/acme-challenge/x: 404"
        )));
        assert!(!means_account_gone(&problem(
            "rateLimited",
            "account limit"
        )));
    }

    #[test]
    fn contacts_compare_as_sets() {
        let a = ["mailto:a@x.test".to_string(), "mailto:b@x.test".to_string()];
        let b = ["mailto:b@x.test".to_string(), "mailto:a@x.test".to_string()];
        assert!(same_contacts(&a, &b));
        assert!(!same_contacts(&a, &b[..1]));
        assert!(same_contacts(&[], &[]));
    }
}
