//! Queries on the `versions` table; private keys are sealed here and nowhere else.

use certfleet_core::policy::AriWindow;
use certfleet_core::time::{self, UnixTime};
use certfleet_core::{
    CertificateStatus, NewVersion, RevocationReason, Secret, StoreError, Version,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::certificates::id_and_current;
use super::{Fail, cert_not_found, corrupt, parse, to_u32};
use crate::seal::Sealer;

/// Associated data binding a sealed key to its row.
fn key_aad(certificate_id: &str, seq: u32) -> String {
    format!("certfleet/v1/version-key/{certificate_id}/{seq}")
}

/// Store `new` as the next version of `name`, make it current and mark the certificate
/// valid with a clean slate (streak 0, no error, no order in flight), all in one transaction.
pub(super) fn add(
    conn: &mut Connection,
    sealer: &Sealer,
    name: &str,
    new: &NewVersion,
) -> Result<Version, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (id, replaces) = id_and_current(&tx, name)?;
    let next: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE certificate_id = ?1")?
        .query_row([&id], |r| r.get(0))?;
    let seq = to_u32(next, "versions.seq")?;
    let sealed_key = sealer.seal(
        new.key_pem.expose().as_bytes(),
        key_aad(&id, seq).as_bytes(),
    );
    let now = time::now();
    let domains = serde_json::to_string(&new.domains).map_err(|e| StoreError::Backend(e.into()))?;
    tx.prepare_cached(
        "INSERT INTO versions (certificate_id, seq, serial, not_before, not_after, leaf_pem,
            chain_pem, key_kind, sealed_key, issued_at, order_url, replaces, revoked_at,
            domains, issuer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, ?13, ?14)",
    )?
    .execute(params![
        id,
        seq,
        new.serial,
        new.not_before,
        new.not_after,
        new.leaf_pem,
        new.chain_pem,
        new.key_kind.as_str(),
        sealed_key,
        now,
        new.order_url,
        replaces,
        domains,
        new.issuer,
    ])?;
    tx.prepare_cached(
        "UPDATE certificates SET current_version = ?2, status = ?3, failure_streak = 0,
            last_error = NULL, order_url = NULL, pending_key = NULL, retry_after = NULL,
            ari_fetch_at = NULL, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, seq, CertificateStatus::Valid.as_str(), now])?;
    tx.commit()?;
    Ok(Version {
        seq,
        serial: new.serial.clone(),
        not_before: new.not_before,
        not_after: new.not_after,
        leaf_pem: new.leaf_pem.clone(),
        chain_pem: new.chain_pem.clone(),
        key_kind: new.key_kind,
        issued_at: now,
        order_url: new.order_url.clone(),
        replaces,
        revoked_at: None,
        revocation_reason: None,
    })
}

/// Mark version `seq` of `name` revoked at `at` for `reason`, unless it already is; `true`
/// when marked now.
pub(super) fn mark_revoked(
    conn: &Connection,
    name: &str,
    seq: u32,
    at: UnixTime,
    reason: RevocationReason,
) -> Result<bool, Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let found: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_at FROM versions WHERE certificate_id = ?1 AND seq = ?2")?
        .query_row(params![id, seq], |r| r.get(0))
        .optional()?;
    match found {
        None => Err(StoreError::NotFound(format!("version {seq} of certificate {name:?}")).into()),
        Some(Some(_)) => Ok(false),
        Some(None) => {
            conn.prepare_cached(
                "UPDATE versions SET revoked_at = ?3, revocation_reason = ?4
                 WHERE certificate_id = ?1 AND seq = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![id, seq, at, reason.as_str()])?;
            Ok(true)
        }
    }
}

/// Version `seq` of `name`, if it exists.
pub(super) fn get(conn: &Connection, name: &str, seq: u32) -> Result<Option<Version>, Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let mut stmt = conn.prepare_cached(&format!(
        "{VERSION_COLUMNS} WHERE certificate_id = ?1 AND seq = ?2"
    ))?;
    let mut rows = stmt.query(params![id, seq])?;
    rows.next()?.map(from_row).transpose()
}

/// Record the ARI window of version `seq` and when to fetch it again.
pub(super) fn set_ari(
    conn: &mut Connection,
    name: &str,
    seq: u32,
    window: Option<AriWindow>,
    fetch_at: Option<UnixTime>,
) -> Result<(), Fail> {
    let tx = conn.transaction()?;
    let changed = tx
        .prepare_cached(
            "UPDATE versions SET ari_start = ?3, ari_end = ?4
             WHERE seq = ?2 AND certificate_id = (SELECT id FROM certificates WHERE name = ?1)",
        )?
        .execute(params![
            name,
            seq,
            window.map(|w| w.start),
            window.map(|w| w.end)
        ])?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("version {seq} of certificate {name:?}")).into());
    }
    tx.prepare_cached("UPDATE certificates SET ari_fetch_at = ?2 WHERE name = ?1")?
        .execute(params![name, fetch_at])?;
    tx.commit()?;
    Ok(())
}

/// Associated data binding the sealed key of an order in flight to its certificate.
fn pending_key_aad(certificate_id: &str) -> String {
    format!("certfleet/v1/pending-key/{certificate_id}")
}

pub(super) fn set_pending_key(
    conn: &Connection,
    sealer: &Sealer,
    name: &str,
    key: Option<&Secret>,
) -> Result<(), Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let sealed = key.map(|k| sealer.seal(k.expose().as_bytes(), pending_key_aad(&id).as_bytes()));
    conn.prepare_cached("UPDATE certificates SET pending_key = ?2 WHERE id = ?1")?
        .execute(params![id, sealed])?;
    Ok(())
}

pub(super) fn pending_key(
    conn: &Connection,
    sealer: &Sealer,
    name: &str,
) -> Result<Option<Secret>, Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT pending_key FROM certificates WHERE id = ?1")?
        .query_row([&id], |r| r.get(0))?;
    let Some(blob) = blob else {
        return Ok(None);
    };
    let what = format!("the key of the order in flight for certificate {name:?}");
    let plain = sealer
        .open(&blob, pending_key_aad(&id).as_bytes())
        .map_err(|_| StoreError::Unseal(what.clone()))?;
    secret_from_utf8(plain, &what).map(Some)
}

const VERSION_COLUMNS: &str = "SELECT seq, serial, not_before, not_after, leaf_pem, chain_pem,
        key_kind, issued_at, order_url, replaces, revoked_at, revocation_reason
    FROM versions";

/// Every version of `name`, oldest first.
pub(super) fn list(conn: &Connection, name: &str) -> Result<Vec<Version>, Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let mut stmt = conn.prepare_cached(&format!(
        "{VERSION_COLUMNS} WHERE certificate_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([&id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// The unsealed private key of version `seq` of `name`.
pub(super) fn key(
    conn: &Connection,
    sealer: &Sealer,
    name: &str,
    seq: u32,
) -> Result<Secret, Fail> {
    let found: Option<(String, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT c.id, v.sealed_key FROM certificates c
             LEFT JOIN versions v ON v.certificate_id = c.id AND v.seq = ?2
             WHERE c.name = ?1",
        )?
        .query_row(params![name, seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, blob) = found.ok_or_else(|| cert_not_found(name))?;
    let what = format!("the key of version {seq} of certificate {name:?}");
    let blob = blob.ok_or_else(|| StoreError::NotFound(what.clone()))?;
    let plain = sealer
        .open(&blob, key_aad(&id, seq).as_bytes())
        .map_err(|_| StoreError::Unseal(what.clone()))?;
    secret_from_utf8(plain, &what)
}

/// Wrap unsealed bytes as a [`Secret`], wiping them if they are not UTF-8.
pub(super) fn secret_from_utf8(plain: Vec<u8>, what: &str) -> Result<Secret, Fail> {
    String::from_utf8(plain).map(Secret::new).map_err(|e| {
        let mut bytes = e.into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        corrupt(format!("{what} is not UTF-8 text"))
    })
}

fn from_row(row: &Row<'_>) -> Result<Version, Fail> {
    let replaces: Option<i64> = row.get(9)?;
    Ok(Version {
        seq: to_u32(row.get(0)?, "versions.seq")?,
        serial: row.get(1)?,
        not_before: row.get(2)?,
        not_after: row.get(3)?,
        leaf_pem: row.get(4)?,
        chain_pem: row.get(5)?,
        key_kind: parse(&row.get::<_, String>(6)?, "versions.key_kind")?,
        issued_at: row.get(7)?,
        order_url: row.get(8)?,
        replaces: replaces
            .map(|v| to_u32(v, "versions.replaces"))
            .transpose()?,
        revoked_at: row.get(10)?,
        revocation_reason: row
            .get::<_, Option<String>>(11)?
            .map(|r| parse(&r, "versions.revocation_reason"))
            .transpose()?,
    })
}
