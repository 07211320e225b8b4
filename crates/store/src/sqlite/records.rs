//! Queries on the smaller tables: `accounts` (credentials sealed), `http01_challenges`
//! (RFC 8555 §8.3 responses any node can serve) and reading the newest events (the log itself
//! is in `events`).

use certfleet_core::time::UnixTime;
use certfleet_core::{
    AccountRecord, ContactsOverride, Event, EventQuery, Http01Challenge, StoreError,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::certificates::id_and_current;
use super::versions::secret_from_utf8;
use super::{Fail, corrupt};
use crate::seal::Sealer;

/// Associated data binding sealed credentials to their account row.
fn account_aad(issuer: &str, directory_url: &str) -> String {
    format!("certfleet/v1/account/{issuer}/{directory_url}")
}

fn account_label(issuer: &str, directory_url: &str) -> String {
    format!("the account of issuer {issuer:?} at {directory_url}")
}

pub(super) fn account(
    conn: &Connection,
    sealer: &Sealer,
    issuer: &str,
    directory_url: &str,
) -> Result<Option<AccountRecord>, Fail> {
    let found: Option<(String, Vec<u8>, UnixTime, String)> = conn
        .prepare_cached(
            "SELECT account_url, sealed_credentials, created_at, contacts FROM accounts
             WHERE issuer = ?1 AND directory_url = ?2",
        )?
        .query_row([issuer, directory_url], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((account_url, blob, created_at, contacts)) = found else {
        return Ok(None);
    };
    let what = account_label(issuer, directory_url);
    let plain = sealer
        .open(&blob, account_aad(issuer, directory_url).as_bytes())
        .map_err(|_| StoreError::Unseal(what.clone()))?;
    Ok(Some(AccountRecord {
        issuer: issuer.to_string(),
        directory_url: directory_url.to_string(),
        account_url,
        credentials: secret_from_utf8(plain, &what)?,
        created_at,
        contacts: serde_json::from_str(&contacts)
            .map_err(|e| corrupt(format!("column accounts.contacts: {e}")))?,
    }))
}

/// Insert or replace the account of `(issuer, directory_url)`.
pub(super) fn save_account(
    conn: &Connection,
    sealer: &Sealer,
    account: &AccountRecord,
) -> Result<(), Fail> {
    let aad = account_aad(&account.issuer, &account.directory_url);
    let sealed = sealer.seal(account.credentials.expose().as_bytes(), aad.as_bytes());
    let contacts =
        serde_json::to_string(&account.contacts).map_err(|e| StoreError::Backend(e.into()))?;
    conn.prepare_cached(
        "INSERT INTO accounts (issuer, directory_url, account_url, sealed_credentials, created_at,
            contacts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (issuer, directory_url) DO UPDATE SET
            account_url = excluded.account_url,
            sealed_credentials = excluded.sealed_credentials,
            created_at = excluded.created_at,
            contacts = excluded.contacts",
    )?
    .execute(params![
        account.issuer,
        account.directory_url,
        account.account_url,
        sealed,
        account.created_at,
        contacts,
    ])?;
    Ok(())
}

/// The contacts override of the account of `(issuer, directory_url)`, if one is set.
pub(super) fn contacts_override(
    conn: &Connection,
    issuer: &str,
    directory_url: &str,
) -> Result<Option<ContactsOverride>, Fail> {
    let found: Option<(Option<String>, Option<String>, Option<UnixTime>)> = conn
        .prepare_cached(
            "SELECT override_contacts, override_configured, override_at FROM accounts
             WHERE issuer = ?1 AND directory_url = ?2",
        )?
        .query_row([issuer, directory_url], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((Some(contacts), configured, at)) = found else {
        return Ok(None);
    };
    let list = |text: &str, column: &str| -> Result<Vec<String>, Fail> {
        serde_json::from_str(text).map_err(|e| corrupt(format!("column accounts.{column}: {e}")))
    };
    Ok(Some(ContactsOverride {
        contacts: list(&contacts, "override_contacts")?,
        configured: list(configured.as_deref().unwrap_or("[]"), "override_configured")?,
        set_at: at.unwrap_or_default(),
    }))
}

/// Set or clear the contacts override of a stored account.
pub(super) fn set_contacts_override(
    conn: &Connection,
    issuer: &str,
    directory_url: &str,
    value: Option<&ContactsOverride>,
) -> Result<(), Fail> {
    let json = |list: &[String]| {
        serde_json::to_string(list).map_err(|e| Fail::from(StoreError::Backend(e.into())))
    };
    let (contacts, configured, at) = match value {
        Some(o) => (
            Some(json(&o.contacts)?),
            Some(json(&o.configured)?),
            Some(o.set_at),
        ),
        None => (None, None, None),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE accounts SET override_contacts = ?3, override_configured = ?4, override_at = ?5
             WHERE issuer = ?1 AND directory_url = ?2",
        )?
        .execute(params![issuer, directory_url, contacts, configured, at])?;
    if changed == 0 {
        return Err(StoreError::NotFound(account_label(issuer, directory_url)).into());
    }
    Ok(())
}

/// Publish (or re-publish) a response; the host is stored lowercase.
pub(super) fn put_challenge(conn: &Connection, challenge: &Http01Challenge) -> Result<(), Fail> {
    let (certificate_id, _) = id_and_current(conn, &challenge.certificate)?;
    conn.prepare_cached(
        "INSERT INTO http01_challenges (token, host, key_authorization, certificate_id, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (token) DO UPDATE SET
            host = excluded.host,
            key_authorization = excluded.key_authorization,
            certificate_id = excluded.certificate_id,
            expires_at = excluded.expires_at",
    )?
    .execute(params![
        challenge.token,
        challenge.host.to_ascii_lowercase(),
        challenge.key_authorization,
        certificate_id,
        challenge.expires_at,
    ])?;
    Ok(())
}

/// The key authorization of `token` if it was published for `host` and is live at `now`.
pub(super) fn challenge_response(
    conn: &Connection,
    token: &str,
    host: &str,
    now: UnixTime,
) -> Result<Option<String>, Fail> {
    Ok(conn
        .prepare_cached(
            "SELECT key_authorization FROM http01_challenges
             WHERE token = ?1 AND host = ?2 AND expires_at > ?3",
        )?
        .query_row(params![token, host.to_ascii_lowercase(), now], |r| r.get(0))
        .optional()?)
}

pub(super) fn remove_challenges(conn: &mut Connection, tokens: &[String]) -> Result<(), Fail> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare("DELETE FROM http01_challenges WHERE token = ?1")?;
        for token in tokens {
            stmt.execute([token])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Drop every response that is no longer live at `now` (`expires_at <= now`).
pub(super) fn purge_challenges(conn: &Connection, now: UnixTime) -> Result<u64, Fail> {
    let removed = conn
        .prepare_cached("DELETE FROM http01_challenges WHERE expires_at <= ?1")?
        .execute([now])?;
    Ok(removed as u64)
}

/// The newest `limit` events, newest first, optionally only those about `certificate`.
pub(super) fn events(
    conn: &Connection,
    certificate: Option<&str>,
    limit: u32,
) -> Result<Vec<Event>, Fail> {
    let query = EventQuery {
        certificate: certificate.map(str::to_string),
        limit,
        ..EventQuery::default()
    };
    super::events::query(conn, &query)
}
