//! Account key rollover (RFC 8555 §7.3.5): a new key for the same account URL, done so that
//! no crash or lost answer can cost the account.
//!
//! 1. A fresh ECDSA P-256 key is made and stored, sealed, *beside* the current one in the
//!    account's credentials (`certfleet_next_key`, which instant-acme ignores) before the CA
//!    is asked.
//! 2. The key change is sent: an inner JWS signed by the new key (its JWK in the header, no
//!    nonce) carrying `{"account", "oldKey"}`, inside a request signed by the current key.
//! 3. On success the new key becomes the only key. A refusal in the CA's words leaves the old
//!    key as it was. When the answer is lost (a reset, a timeout, a 5xx) the CA is asked which
//!    key it holds (POST-as-GET with each), and that one is kept.
//! 4. A stored second key found later — at start-up, or when an order hears that the CA
//!    does not know the account — is settled the same way before anything else happens, so
//!    a process killed between 2 and 3 keeps its account.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_core::{AccountRecord, Secret};

use crate::account::AccountState;
use crate::error::AcmeError;
use crate::issuer::AcmeIssuer;
use crate::jws::AccountKey;

/// Field of the stored credentials holding the key of a rollover in progress.
const NEXT_KEY: &str = "certfleet_next_key";
/// Field of instant-acme's credentials holding the account key.
const KEY: &str = "key_pkcs8";
/// The only kind of account key certfleet makes (instant-acme's and its own).
pub const ACCOUNT_KEY_TYPE: &str = "ecdsa-p256";

/// What a rollover did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledOver {
    /// The account URL, unchanged.
    pub account_url: String,
    /// JWK thumbprint (RFC 7638) of the old key.
    pub old_thumbprint: String,
    /// JWK thumbprint of the new key.
    pub new_thumbprint: String,
    /// The CA's answer was lost; asking it showed the new key in place.
    pub answer_lost: bool,
}

/// The key of a rollover in progress in stored credentials, PKCS#8 DER.
pub fn next_key(credentials: &str) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_str(credentials).ok()?;
    URL_SAFE_NO_PAD.decode(value.get(NEXT_KEY)?.as_str()?).ok()
}

/// The signer of the current key in stored credentials (no network).
pub fn current_key(record: &AccountRecord) -> Result<AccountKey, AcmeError> {
    let value = parse(record.credentials.expose())?;
    let der = value
        .get(KEY)
        .and_then(|k| k.as_str())
        .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
        .ok_or_else(|| AcmeError::Config("stored account credentials have no key".into()))?;
    AccountKey::new(&der, &record.account_url)
}

fn parse(credentials: &str) -> Result<serde_json::Value, AcmeError> {
    serde_json::from_str(credentials)
        .map_err(|e| AcmeError::Config(format!("stored account is unreadable: {e}")))
}

/// `credentials` with `field` set to the base64url of `der` (or removed, with `None`).
fn with_field(credentials: &str, field: &str, der: Option<&[u8]>) -> Result<Secret, AcmeError> {
    let mut value = parse(credentials)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| AcmeError::Config("stored account credentials are not an object".into()))?;
    match der {
        Some(der) => object.insert(field.into(), URL_SAFE_NO_PAD.encode(der).into()),
        None => object.remove(field),
    };
    Ok(Secret::new(value.to_string()))
}

/// Which key the CA holds for a rollover in progress.
#[derive(PartialEq, Eq)]
enum Held {
    New,
    Old,
    /// The CA knows the account under neither key (its database was reset): a new account
    /// must be registered.
    Neither,
}

impl AcmeIssuer {
    /// Replace the account key (RFC 8555 §7.3.5), keeping the account URL; see the module
    /// docs for how a crash or a lost answer is survived. A refusal is an
    /// [`AcmeError::Problem`] in the CA's words; the old key stays then.
    pub async fn rollover(&self) -> Result<RolledOver, AcmeError> {
        let cfg = self.config();
        let mut slot = self.account_slot().lock().await;
        let state = match slot.as_ref() {
            Some(state) => state.clone(),
            None => Arc::new(self.load_or_register().await?),
        };
        let url = self.directory().await?.key_change.clone().ok_or_else(|| {
            AcmeError::Config(format!(
                "the CA at {} offers no keyChange resource: it cannot roll over account keys",
                cfg.directory_url
            ))
        })?;
        let mut record = self.stored_account().await?;
        let (new_key, der) = AccountKey::generate(state.url())?;
        record.credentials = with_field(record.credentials.expose(), NEXT_KEY, Some(&der))?;
        self.store().save_account(&record).await?;
        let inner = new_key.key_change_jws(&url, state.url(), &state.key)?;
        let raw = self.raw().await?;
        let sent = raw
            .post(&state.key, &url, Some(&inner))
            .await
            .and_then(|r| r.check());
        let answer_lost = match sent {
            Ok(_) => false,
            Err(AcmeError::Problem(p)) if p.status.is_some_and(|s| s < 500) => {
                record.credentials = with_field(record.credentials.expose(), NEXT_KEY, None)?;
                self.store().save_account(&record).await?;
                *slot = Some(state);
                return Err(AcmeError::Problem(p));
            }
            Err(e) => {
                tracing::warn!(issuer = %cfg.name, error = %e, "the CA's answer to the key change was lost; asking it which key it holds");
                match self.which_key(&record).await {
                    Ok(Held::New) => true,
                    Ok(held @ (Held::Old | Held::Neither)) => {
                        record.credentials =
                            with_field(record.credentials.expose(), NEXT_KEY, None)?;
                        self.store().save_account(&record).await?;
                        // A forgotten account is registered anew at the next use.
                        *slot = (held == Held::Old).then_some(state);
                        return Err(e);
                    }
                    Err(unsure) => {
                        // Both keys stay stored; the next use settles it (module docs, 4.).
                        *slot = None;
                        // Both are transport failures as a rule: say "talking to the CA"
                        // once, not three times.
                        let bare = |e: &AcmeError| match e {
                            AcmeError::Transport(m) => m.clone(),
                            other => other.to_string(),
                        };
                        return Err(AcmeError::Transport(format!(
                            "{}; whether the CA changed the key is not known yet ({}): \
                             certfleet keeps both keys and finds out at the next use",
                            bare(&e),
                            bare(&unsure)
                        )));
                    }
                }
            }
        };
        let fresh = self
            .commit_rollover(record, &der, state.contacts.clone())
            .await?;
        let done = RolledOver {
            account_url: fresh.url().to_string(),
            old_thumbprint: state.key.thumbprint(),
            new_thumbprint: fresh.key.thumbprint(),
            answer_lost,
        };
        let lost = if answer_lost {
            " (the CA's answer was lost; it was asked which key it holds)"
        } else {
            ""
        };
        let message = format!(
            "rolled over the key of ACME account {} (RFC 8555 §7.3.5): key thumbprint {} → {}{lost}",
            done.account_url, done.old_thumbprint, done.new_thumbprint
        );
        tracing::info!(issuer = %cfg.name, "{message}");
        self.record_account_event(&message).await?;
        *slot = Some(Arc::new(fresh));
        Ok(done)
    }

    async fn stored_account(&self) -> Result<AccountRecord, AcmeError> {
        let cfg = self.config();
        self.store()
            .account(&cfg.name, &cfg.directory_url)
            .await?
            .ok_or_else(|| AcmeError::Config("the account vanished from the store".into()))
    }

    /// Make `der` the only key of the stored account and open it.
    async fn commit_rollover(
        &self,
        mut record: AccountRecord,
        der: &[u8],
        contacts: Vec<String>,
    ) -> Result<AccountState, AcmeError> {
        let credentials = with_field(record.credentials.expose(), KEY, Some(der))?;
        record.credentials = with_field(credentials.expose(), NEXT_KEY, None)?;
        self.store().save_account(&record).await?;
        let (account, key) = self
            .open_credentials(record.credentials.expose(), &record.account_url)
            .await?;
        Ok(AccountState {
            account,
            key,
            contacts,
        })
    }

    /// Ask the CA which of the two stored keys it holds for the account.
    async fn which_key(&self, record: &AccountRecord) -> Result<Held, AcmeError> {
        let next = next_key(record.credentials.expose())
            .ok_or_else(|| AcmeError::Config("no rollover in progress".into()))?;
        let new_key = AccountKey::new(&next, &record.account_url)?;
        let new_answer = self.account_object(&new_key).await;
        if new_answer.is_ok_and(|o| o.status == "valid") {
            return Ok(Held::New);
        }
        let old_key = current_key(record)?;
        match self.account_object(&old_key).await {
            Ok(o) if o.status == "valid" => Ok(Held::Old),
            Err(AcmeError::Problem(p)) if crate::account::means_account_gone(&p) => {
                Ok(Held::Neither)
            }
            Ok(o) => Err(AcmeError::BadResponse(format!(
                "the CA reports the account as {}",
                o.status
            ))),
            Err(e) => Err(e),
        }
    }

    /// A stored record with a rollover in progress, settled: the key the CA holds is kept
    /// (and stored as the only one); when the CA knows neither (it forgot the account), the
    /// old key is kept and the caller registers anew (`false`). An error when the CA cannot
    /// tell (both keys stay).
    pub(crate) async fn settle_rollover(
        &self,
        mut record: AccountRecord,
    ) -> Result<(AccountRecord, bool), AcmeError> {
        let Some(der) = next_key(record.credentials.expose()) else {
            return Ok((record, true));
        };
        let mut known = true;
        let message = match self.which_key(&record).await? {
            Held::New => {
                let credentials = with_field(record.credentials.expose(), KEY, Some(&der))?;
                record.credentials = with_field(credentials.expose(), NEXT_KEY, None)?;
                format!(
                    "the interrupted key rollover of ACME account {} took effect at the CA; \
                     the new key is kept",
                    record.account_url
                )
            }
            Held::Old => {
                record.credentials = with_field(record.credentials.expose(), NEXT_KEY, None)?;
                format!(
                    "the interrupted key rollover of ACME account {} did not reach the CA; \
                     the old key is kept",
                    record.account_url
                )
            }
            Held::Neither => {
                known = false;
                record.credentials = with_field(record.credentials.expose(), NEXT_KEY, None)?;
                format!(
                    "the CA no longer knows ACME account {} under either key of the \
                     interrupted key rollover; a new account is registered",
                    record.account_url
                )
            }
        };
        self.store().save_account(&record).await?;
        tracing::warn!(issuer = %self.config().name, "{message}");
        self.record_account_event(&message).await?;
        Ok((record, known))
    }

    /// When an order hears that the CA does not know the account: if a rollover is in
    /// progress in the store, settle it and return the account with the key the CA holds.
    pub(crate) async fn settle_pending_rollover(&self) -> Result<Option<AccountState>, AcmeError> {
        let record = self.stored_account().await?;
        if next_key(record.credentials.expose()).is_none() {
            return Ok(None);
        }
        let (record, known) = self.settle_rollover(record).await?;
        if !known {
            return Ok(None);
        }
        let (account, key) = self
            .open_credentials(record.credentials.expose(), &record.account_url)
            .await?;
        Ok(Some(AccountState {
            account,
            key,
            contacts: record.contacts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_key_rides_along_in_the_credentials() {
        let creds = r#"{"id":"https://ca.test/acct/1","key_pkcs8":"AAEC","directory":"https://ca.test/dir"}"#;
        assert_eq!(next_key(creds), None);
        let with = with_field(creds, NEXT_KEY, Some(&[9, 8, 7])).unwrap();
        assert_eq!(next_key(with.expose()), Some(vec![9, 8, 7]));
        let value: serde_json::Value = serde_json::from_str(with.expose()).unwrap();
        assert_eq!(value["key_pkcs8"], "AAEC", "the current key stays");
        assert_eq!(value["directory"], "https://ca.test/dir");
        let swapped = with_field(with.expose(), KEY, Some(&[9, 8, 7])).unwrap();
        let without = with_field(swapped.expose(), NEXT_KEY, None).unwrap();
        assert_eq!(next_key(without.expose()), None);
        let value: serde_json::Value = serde_json::from_str(without.expose()).unwrap();
        assert_eq!(value["key_pkcs8"], URL_SAFE_NO_PAD.encode([9, 8, 7]));
    }
}
