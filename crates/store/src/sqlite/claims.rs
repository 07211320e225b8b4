//! Renewal claims on the `certificates` table: who works on a certificate, until when, and
//! when it is due next.
//!
//! While a certificate is claimed its `next_due` is the claim's end, so "due" is a single
//! indexed range (`next_due <= now`, index `certificates_next_due`) whether a certificate is
//! unclaimed or its claim has run out, and the earliest wake-up is `MIN(next_due)`.
//! Certificates certfleet does not renew (`source = manual`) never get a `next_due`.

use certfleet_core::Certificate;
use certfleet_core::time::UnixTime;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::certificates::{SELECT, from_row};
use super::{Fail, cert_not_found};

pub(super) fn claim_due(
    conn: &mut Connection,
    owner: &str,
    now: UnixTime,
    until: UnixTime,
    limit: u32,
) -> Result<Vec<Certificate>, Fail> {
    const DUE: &str = "SELECT id FROM certificates WHERE next_due <= ?1 AND source = 'acme'
        ORDER BY next_due LIMIT ?2";
    // Most passes find nothing due: answer those without a write transaction.
    let any_due: Option<String> = conn
        .prepare_cached(DUE)?
        .query_row(params![now, 1], |r| r.get(0))
        .optional()?;
    if any_due.is_none() || limit == 0 {
        return Ok(Vec::new());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<String> = {
        let mut stmt = tx.prepare_cached(DUE)?;
        let rows = stmt.query_map(params![now, limit], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    {
        let mut update = tx.prepare_cached(
            "UPDATE certificates SET claim_owner = ?2, claim_until = ?3, next_due = ?3
             WHERE id = ?1",
        )?;
        let mut select = tx.prepare_cached(&format!("{SELECT} WHERE c.id = ?1"))?;
        for id in &ids {
            update.execute(params![id, owner, until])?;
            let mut rows = select.query([id])?;
            if let Some(row) = rows.next()? {
                out.push(from_row(row)?);
            }
        }
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn claim(
    conn: &mut Connection,
    name: &str,
    owner: &str,
    now: UnixTime,
    until: UnixTime,
) -> Result<Option<Certificate>, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx
        .prepare_cached(
            "UPDATE certificates SET claim_owner = ?2, claim_until = ?4, next_due = ?4
         WHERE name = ?1 AND (claim_owner IS NULL OR claim_owner = ?2 OR claim_until <= ?3)",
        )?
        .execute(params![name, owner, now, until])?;
    if changed == 0 {
        let exists: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM certificates WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        return match exists {
            Some(_) => Ok(None),
            None => Err(cert_not_found(name)),
        };
    }
    let cert = {
        let mut stmt = tx.prepare_cached(&format!("{SELECT} WHERE c.name = ?1"))?;
        let mut rows = stmt.query([name])?;
        match rows.next()? {
            Some(row) => from_row(row)?,
            None => return Err(cert_not_found(name)),
        }
    };
    tx.commit()?;
    Ok(Some(cert))
}

pub(super) fn extend_claim(
    conn: &Connection,
    name: &str,
    owner: &str,
    until: UnixTime,
) -> Result<bool, Fail> {
    let changed = conn
        .prepare_cached(
            "UPDATE certificates SET claim_until = ?3, next_due = ?3
         WHERE name = ?1 AND claim_owner = ?2",
        )?
        .execute(params![name, owner, until])?;
    Ok(changed > 0)
}

pub(super) fn release_claim(
    conn: &Connection,
    name: &str,
    owner: &str,
    next_due: Option<UnixTime>,
) -> Result<bool, Fail> {
    let changed = conn
        .prepare_cached(
            "UPDATE certificates SET claim_owner = NULL, claim_until = NULL, next_due = ?3
         WHERE name = ?1 AND claim_owner = ?2",
        )?
        .execute(params![name, owner, next_due])?;
    Ok(changed > 0)
}

pub(super) fn release_all_claims(conn: &Connection, now: UnixTime) -> Result<u64, Fail> {
    let changed = conn
        .prepare_cached(
            "UPDATE certificates SET claim_owner = NULL, claim_until = NULL, next_due = ?1
         WHERE claim_owner IS NOT NULL",
        )?
        .execute([now])?;
    Ok(changed as u64)
}

pub(super) fn next_due(conn: &Connection) -> Result<Option<UnixTime>, Fail> {
    let min: Option<UnixTime> = conn
        .prepare_cached("SELECT MIN(next_due) FROM certificates")?
        .query_row([], |r| r.get(0))?;
    Ok(min)
}
