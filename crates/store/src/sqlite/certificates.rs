//! Queries on the `certificates` table, including the renewal claims (see `claims`).

use certfleet_core::policy::AriWindow;
use certfleet_core::time::{self, UnixTime};
use certfleet_core::{
    CertName, Certificate, CertificateStatus, DnsName, IssuedFor, Labels, NewCertificate, Source,
    StoreError,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use super::{Fail, cert_not_found, corrupt, parse, to_u32};

/// Bytes of randomness in a certificate id (hex-encoded, so twice as many characters).
const ID_BYTES: usize = 16;

/// Columns of a [`Certificate`], with `not_after` from its current version.
pub(super) const SELECT: &str = "SELECT c.id, c.name, c.domains, c.issuer, c.key_kind,
        c.challenge, c.source, c.status, c.current_version, v.not_after, c.failure_streak,
        c.last_error, c.next_due, c.order_url, c.created_at, c.updated_at, c.labels, v.domains,
        v.issuer, v.key_kind, c.solvers, c.profile, c.renew_before, c.retry_after, v.not_before,
        v.ari_start, v.ari_end, c.ari_fetch_at, c.claim_owner, c.claim_until, v.revoked_at
    FROM certificates c
    LEFT JOIN versions v ON v.certificate_id = c.id AND v.seq = c.current_version";

pub(super) fn create(conn: &Connection, new: &NewCertificate) -> Result<Certificate, Fail> {
    let id = random_id()?;
    let now = time::now();
    let domains = serde_json::to_string(&new.domains).map_err(|e| StoreError::Backend(e.into()))?;
    let solvers = serde_json::to_string(&new.solvers).map_err(|e| StoreError::Backend(e.into()))?;
    // A certificate certfleet renews is due at once: the scheduler issues it.
    let next_due = (new.source == Source::Acme).then_some(now);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO certificates (id, name, domains, issuer, key_kind, challenge, source,
            status, failure_streak, created_at, updated_at, solvers, next_due, profile,
            renew_before)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            id,
            new.name.as_str(),
            domains,
            new.issuer,
            new.key_kind.as_str(),
            new.challenge.as_str(),
            new.source.as_str(),
            CertificateStatus::Pending.as_str(),
            now,
            solvers,
            next_due,
            new.profile,
            new.renew_before.map(|r| r.to_string()),
        ]);
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists(new.name.to_string()).into());
        }
        other => other?,
    };
    Ok(Certificate {
        id,
        name: new.name.clone(),
        domains: new.domains.clone(),
        issuer: new.issuer.clone(),
        key_kind: new.key_kind,
        challenge: new.challenge,
        source: new.source,
        status: CertificateStatus::Pending,
        current_version: None,
        not_after: None,
        failure_streak: 0,
        last_error: None,
        next_due,
        order_url: None,
        created_at: now,
        updated_at: now,
        current: None,
        labels: Labels::new(),
        solvers: new.solvers.clone(),
        profile: new.profile.clone(),
        renew_before: new.renew_before,
        retry_after: None,
        not_before: None,
        ari_window: None,
        ari_fetch_at: None,
        claim_owner: None,
        claim_until: None,
        current_revoked_at: None,
    })
}

/// Replace the declaration of `name` (names, issuer, key kind, challenge, solvers, profile,
/// `renew_before`). When what a version is issued for changed (the set of names, key kind,
/// issuer, challenge or solvers), an order in flight for the old declaration is forgotten with
/// its kept key. An ACME certificate becomes due now, so that the scheduler acts on the change.
pub(super) fn update_declaration(
    conn: &mut Connection,
    name: &str,
    new: &NewCertificate,
) -> Result<Certificate, Fail> {
    let tx = conn.transaction()?;
    let old = get(&tx, name)?.ok_or_else(|| cert_not_found(name))?;
    let same_names = old.domains.len() == new.domains.len()
        && new.domains.iter().all(|d| old.domains.contains(d));
    let identity_changed = !same_names
        || old.key_kind != new.key_kind
        || old.issuer != new.issuer
        || old.challenge != new.challenge
        || old.solvers != new.solvers;
    let domains = serde_json::to_string(&new.domains).map_err(|e| StoreError::Backend(e.into()))?;
    let solvers = serde_json::to_string(&new.solvers).map_err(|e| StoreError::Backend(e.into()))?;
    let now = time::now();
    tx.execute(
        "UPDATE certificates SET domains = ?2, issuer = ?3, key_kind = ?4, challenge = ?5,
            solvers = ?6, profile = ?7, renew_before = ?8, updated_at = ?9,
            next_due = CASE source WHEN 'acme' THEN ?9 ELSE next_due END,
            order_url = CASE ?10 WHEN 1 THEN NULL ELSE order_url END,
            pending_key = CASE ?10 WHEN 1 THEN NULL ELSE pending_key END
         WHERE name = ?1",
        params![
            name,
            domains,
            new.issuer,
            new.key_kind.as_str(),
            new.challenge.as_str(),
            solvers,
            new.profile,
            new.renew_before.map(|r| r.to_string()),
            now,
            identity_changed,
        ],
    )?;
    let updated = get(&tx, name)?.ok_or_else(|| cert_not_found(name))?;
    tx.commit()?;
    Ok(updated)
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<Certificate>, Fail> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE c.name = ?1"))?;
    let mut rows = stmt.query([name])?;
    rows.next()?.map(from_row).transpose()
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Certificate>, Fail> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY c.name"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// Versions and challenges go with the certificate (`ON DELETE CASCADE`); events stay.
pub(super) fn delete(conn: &Connection, name: &str) -> Result<bool, Fail> {
    Ok(conn
        .prepare_cached("DELETE FROM certificates WHERE name = ?1")?
        .execute([name])?
        > 0)
}

pub(super) fn set_status(
    conn: &Connection,
    name: &str,
    status: CertificateStatus,
    error: Option<&str>,
) -> Result<(), Fail> {
    let changed = conn
        .prepare_cached(
            "UPDATE certificates SET
            status = ?2,
            failure_streak = CASE ?2 WHEN 'failed' THEN failure_streak + 1
                                     WHEN 'valid' THEN 0
                                     ELSE failure_streak END,
            last_error = CASE ?2 WHEN 'failed' THEN ?3
                                 WHEN 'valid' THEN NULL
                                 ELSE last_error END,
            updated_at = ?4
         WHERE name = ?1",
        )?
        .execute(params![name, status.as_str(), error, time::now()])?;
    if changed == 0 {
        return Err(cert_not_found(name));
    }
    Ok(())
}

/// Set the source and issuer of `name` together.
pub(super) fn set_source(
    conn: &Connection,
    name: &str,
    source: Source,
    issuer: &str,
) -> Result<(), Fail> {
    // An ACME certificate is on the schedule (due now, so the scheduler plans its renewal);
    // a manual one is not.
    let changed = conn.execute(
        "UPDATE certificates SET source = ?2, issuer = ?3, updated_at = ?4,
            next_due = CASE ?2 WHEN 'acme' THEN COALESCE(next_due, ?4) ELSE NULL END
         WHERE name = ?1",
        params![name, source.as_str(), issuer, time::now()],
    )?;
    if changed == 0 {
        return Err(cert_not_found(name));
    }
    Ok(())
}

pub(super) fn set_order_url(conn: &Connection, name: &str, url: Option<&str>) -> Result<(), Fail> {
    let changed = conn
        .prepare_cached("UPDATE certificates SET order_url = ?2, updated_at = ?3 WHERE name = ?1")?
        .execute(params![name, url, time::now()])?;
    if changed == 0 {
        return Err(cert_not_found(name));
    }
    Ok(())
}

pub(super) fn set_retry_after(
    conn: &Connection,
    name: &str,
    at: Option<UnixTime>,
) -> Result<(), Fail> {
    let changed = conn
        .prepare_cached(
            "UPDATE certificates SET retry_after = ?2, updated_at = ?3 WHERE name = ?1",
        )?
        .execute(params![name, at, time::now()])?;
    if changed == 0 {
        return Err(cert_not_found(name));
    }
    Ok(())
}

/// The id and current version of the certificate called `name`.
pub(super) fn id_and_current(conn: &Connection, name: &str) -> Result<(String, Option<u32>), Fail> {
    let found: Option<(String, Option<i64>)> = conn
        .prepare_cached("SELECT id, current_version FROM certificates WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, current) = found.ok_or_else(|| cert_not_found(name))?;
    let current = current
        .map(|v| to_u32(v, "certificates.current_version"))
        .transpose()?;
    Ok((id, current))
}

pub(super) fn from_row(row: &Row<'_>) -> Result<Certificate, Fail> {
    let name: String = row.get(1)?;
    let domains: String = row.get(2)?;
    let source: String = row.get(6)?;
    let current: Option<i64> = row.get(8)?;
    Ok(Certificate {
        id: row.get(0)?,
        name: CertName::parse(&name).map_err(|e| corrupt(format!("column name: {e}")))?,
        domains: parse_domains(&domains)?,
        issuer: row.get(3)?,
        key_kind: parse(&row.get::<_, String>(4)?, "key_kind")?,
        challenge: parse(&row.get::<_, String>(5)?, "challenge")?,
        source: parse_source(&source)?,
        status: parse(&row.get::<_, String>(7)?, "status")?,
        current_version: current.map(|v| to_u32(v, "current_version")).transpose()?,
        not_after: row.get::<_, Option<UnixTime>>(9)?,
        failure_streak: to_u32(row.get(10)?, "failure_streak")?,
        last_error: row.get(11)?,
        next_due: row.get(12)?,
        order_url: row.get(13)?,
        created_at: row.get(14)?,
        updated_at: row.get(15)?,
        labels: parse_labels(&row.get::<_, String>(16)?)?,
        current: issued_for(row)?,
        solvers: serde_json::from_str(&row.get::<_, String>(20)?)
            .map_err(|e| corrupt(format!("column solvers: {e}")))?,
        profile: row.get(21)?,
        renew_before: row
            .get::<_, Option<String>>(22)?
            .map(|r| parse(&r, "renew_before"))
            .transpose()?,
        retry_after: row.get(23)?,
        not_before: row.get(24)?,
        ari_window: match (
            row.get::<_, Option<i64>>(25)?,
            row.get::<_, Option<i64>>(26)?,
        ) {
            (Some(start), Some(end)) => Some(AriWindow { start, end }),
            _ => None,
        },
        ari_fetch_at: row.get(27)?,
        claim_owner: row.get(28)?,
        claim_until: row.get(29)?,
        current_revoked_at: row.get(30)?,
    })
}

/// What the current version was issued for (columns 17-19), if there is one.
fn issued_for(row: &Row<'_>) -> Result<Option<IssuedFor>, Fail> {
    let domains: Option<String> = row.get(17)?;
    let issuer: Option<String> = row.get(18)?;
    let key_kind: Option<String> = row.get(19)?;
    let (Some(domains), Some(issuer), Some(key_kind)) = (domains, issuer, key_kind) else {
        return Ok(None);
    };
    Ok(Some(IssuedFor {
        domains: parse_domains(&domains)?,
        issuer,
        key_kind: parse(&key_kind, "versions.key_kind")?,
    }))
}

fn parse_labels(json: &str) -> Result<Labels, Fail> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("column labels: {e}")))
}

/// Replace the labels of `name`.
pub(super) fn set_labels(conn: &Connection, name: &str, labels: &Labels) -> Result<(), Fail> {
    let json = serde_json::to_string(labels).map_err(|e| StoreError::Backend(e.into()))?;
    let changed = conn.execute(
        "UPDATE certificates SET labels = ?2, updated_at = ?3 WHERE name = ?1",
        params![name, json, time::now()],
    )?;
    if changed == 0 {
        return Err(cert_not_found(name));
    }
    Ok(())
}

fn parse_domains(json: &str) -> Result<Vec<DnsName>, Fail> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("column domains: {e}")))
}

fn parse_source(text: &str) -> Result<Source, Fail> {
    [Source::Acme, Source::Manual]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| corrupt(format!("column source: unknown source {text:?}")))
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error().is_some_and(|err| {
        err.code == ErrorCode::ConstraintViolation
            && err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    })
}

fn random_id() -> Result<String, Fail> {
    let mut bytes = [0u8; ID_BYTES];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Backend("the system random number generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
