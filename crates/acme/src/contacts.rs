//! Which contacts an issuer's ACME account carries, and `certfleet account update`
//! (RFC 8555 §7.3.2).
//!
//! The configured contacts rule — unless a person set others with
//! [`AcmeIssuer::update_contacts`]. Those are stored as a [`ContactsOverride`] together with
//! the configured contacts of that moment. At every start-up the override still rules while
//! the configuration says what it said then, so a restart does not undo the person's update;
//! once someone edits the configured contacts, the configuration rules again and the override
//! is dropped (logged and recorded as `account_updated`), so an edited config file is not
//! silently ignored either. Updating to exactly the configured contacts drops the override.

use std::sync::Arc;

use certfleet_core::ContactsOverride;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::account::{AccountState, same_contacts};
use crate::error::AcmeError;
use crate::issuer::AcmeIssuer;

/// What [`AcmeIssuer::update_contacts`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactsUpdate {
    /// The account URL (unchanged: the account is updated, not replaced).
    pub account_url: String,
    /// The contacts the CA held before.
    pub before: Vec<String>,
    /// The contacts the CA confirmed.
    pub contacts: Vec<String>,
    /// Whether they are the configured contacts (no override is kept).
    pub follows_configuration: bool,
}

fn when(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

impl AcmeIssuer {
    /// The contacts the account should carry, and where they come from (for messages):
    /// the override of `account update` while the configured contacts are unchanged since,
    /// else the configured contacts (dropping an override the configuration has moved past).
    pub(crate) async fn wanted_contacts(&self) -> Result<(Vec<String>, String), AcmeError> {
        let cfg = self.config();
        let configured = (cfg.contacts.clone(), "the configuration".to_string());
        let Some(o) = self
            .store()
            .contacts_override(&cfg.name, &cfg.directory_url)
            .await?
        else {
            return Ok(configured);
        };
        if same_contacts(&o.configured, &cfg.contacts) {
            let source = format!("`certfleet account update` of {}", when(o.set_at));
            return Ok((o.contacts, source));
        }
        self.store()
            .set_contacts_override(&cfg.name, &cfg.directory_url, None)
            .await?;
        let message = format!(
            "the configured contacts of issuer {} changed from [{}] to [{}] since `certfleet \
             account update` set [{}] on {}; following the configuration again",
            cfg.name,
            o.configured.join(", "),
            cfg.contacts.join(", "),
            o.contacts.join(", "),
            when(o.set_at)
        );
        tracing::info!(issuer = %cfg.name, "{message}");
        self.record_account_event(&message).await?;
        Ok(configured)
    }

    /// Set the account's contacts at the CA now (RFC 8555 §7.3.2; the account URL stays),
    /// store what the CA confirmed, and keep them over the configured contacts until the
    /// configuration's contacts change (see the module docs). A contact the CA refuses is an
    /// [`AcmeError::Problem`] with the CA's words (`invalidContact`, `unsupportedContact`);
    /// nothing is stored then.
    pub async fn update_contacts(&self, contacts: &[String]) -> Result<ContactsUpdate, AcmeError> {
        let cfg = self.config();
        let mut slot = self.account_slot().lock().await;
        let state = match slot.as_ref() {
            Some(state) => state.clone(),
            None => Arc::new(self.load_or_register().await?),
        };
        let confirmed = self.send_contacts(&state.key, contacts).await?;
        let mut record = self
            .store()
            .account(&cfg.name, &cfg.directory_url)
            .await?
            .ok_or_else(|| AcmeError::Config("the account vanished from the store".into()))?;
        record.contacts = confirmed.clone();
        self.store().save_account(&record).await?;
        let follows_configuration = same_contacts(contacts, &cfg.contacts);
        let kept = (!follows_configuration).then(|| ContactsOverride {
            contacts: contacts.to_vec(),
            configured: cfg.contacts.clone(),
            set_at: certfleet_core::time::now(),
        });
        self.store()
            .set_contacts_override(&cfg.name, &cfg.directory_url, kept.as_ref())
            .await?;
        let kept_note = if follows_configuration {
            "; these are the configured contacts, which rule again".to_string()
        } else {
            format!(
                "; they override the configured [{}] until the configuration's contacts change",
                cfg.contacts.join(", ")
            )
        };
        let message = format!(
            "contacts of ACME account {} changed from [{}] to [{}] by `certfleet account \
             update`{kept_note}",
            state.url(),
            state.contacts.join(", "),
            confirmed.join(", ")
        );
        tracing::info!(issuer = %cfg.name, "{message}");
        self.record_account_event(&message).await?;
        let update = ContactsUpdate {
            account_url: state.url().to_string(),
            before: state.contacts.clone(),
            contacts: confirmed.clone(),
            follows_configuration,
        };
        *slot = Some(Arc::new(AccountState {
            account: state.account.clone(),
            key: state.key.duplicate()?,
            contacts: confirmed,
        }));
        Ok(update)
    }
}
