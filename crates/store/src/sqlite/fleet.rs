//! Queries on the fleet tables: `tokens` (API tokens, agents among them, stored as SHA-256
//! hashes), `deployments` (each agent's latest report per certificate),
//! `http01_confirmations`, and the `revision` counter that triggers keep moving.

use certfleet_core::time::{self, UnixTime};
use certfleet_core::{
    AgentSeen, DeploymentRecord, DeploymentReport, Http01Challenge, NewToken, Role, Selector,
    StoreError, TokenRecord,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::certificates::{id_and_current, is_unique_violation};
use super::{Fail, corrupt, parse, to_u32};

const TOKEN_COLUMNS: &str = "SELECT name, role, selector, created_at, revoked_at, last_seen,
        clock_offset_ms, serves_http01 FROM tokens";

pub(super) fn create_token(conn: &Connection, new: &NewToken) -> Result<TokenRecord, Fail> {
    let now = time::now();
    let selector = new.selector.as_ref().map(ToString::to_string);
    let inserted = conn.execute(
        "INSERT INTO tokens (name, role, selector, token_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![new.name, new.role.as_str(), selector, new.token_hash, now],
    );
    match inserted {
        Err(e) if is_unique_violation(&e) || is_primary_key_violation(&e) => {
            return Err(StoreError::AlreadyExists(new.name.clone()).into());
        }
        other => other?,
    };
    Ok(TokenRecord {
        name: new.name.clone(),
        role: new.role,
        selector: new.selector.clone(),
        created_at: now,
        revoked_at: None,
        last_seen: None,
        clock_offset_ms: None,
        serves_http01: false,
    })
}

pub(super) fn token_by_hash(conn: &Connection, hash: &str) -> Result<Option<TokenRecord>, Fail> {
    let mut stmt = conn.prepare(&format!(
        "{TOKEN_COLUMNS} WHERE token_hash = ?1 AND revoked_at IS NULL"
    ))?;
    let mut rows = stmt.query([hash])?;
    rows.next()?.map(token_from_row).transpose()
}

pub(super) fn tokens(conn: &Connection) -> Result<Vec<TokenRecord>, Fail> {
    let mut stmt = conn.prepare(&format!("{TOKEN_COLUMNS} ORDER BY name"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(token_from_row(row)?);
    }
    Ok(out)
}

pub(super) fn revoke_token(conn: &Connection, name: &str) -> Result<bool, Fail> {
    Ok(conn.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, time::now()],
    )? > 0)
}

pub(super) fn touch_token(conn: &Connection, name: &str, seen: AgentSeen) -> Result<(), Fail> {
    conn.execute(
        "UPDATE tokens SET last_seen = ?2,
            clock_offset_ms = COALESCE(?3, clock_offset_ms),
            serves_http01 = COALESCE(?4, serves_http01)
         WHERE name = ?1",
        params![name, seen.at, seen.clock_offset_ms, seen.serves_http01],
    )?;
    Ok(())
}

fn token_from_row(row: &Row<'_>) -> Result<TokenRecord, Fail> {
    let selector: Option<String> = row.get(2)?;
    Ok(TokenRecord {
        name: row.get(0)?,
        role: parse::<Role>(&row.get::<_, String>(1)?, "tokens.role")?,
        selector: selector
            .map(|s| Selector::parse(&s).map_err(|e| corrupt(format!("column selector: {e}"))))
            .transpose()?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
        last_seen: row.get(5)?,
        clock_offset_ms: row.get(6)?,
        serves_http01: row.get(7)?,
    })
}

fn is_primary_key_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|err| err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

const DEPLOYMENT_COLUMNS: &str = "SELECT d.agent, c.name, d.version, d.serial, d.verified,
        d.served_serial, d.hook_status, d.hook_output, d.error, d.rolled_back, d.reported_at
    FROM deployments d JOIN certificates c ON c.id = d.certificate_id";

/// Upsert the report; the previous record comes back.
pub(super) fn record_deployment(
    conn: &mut Connection,
    agent: &str,
    report: &DeploymentReport,
) -> Result<Option<DeploymentRecord>, Fail> {
    let tx = conn.transaction()?;
    let (certificate_id, _) = id_and_current(&tx, &report.certificate)?;
    let previous = {
        let mut stmt = tx.prepare(&format!(
            "{DEPLOYMENT_COLUMNS} WHERE d.agent = ?1 AND d.certificate_id = ?2"
        ))?;
        let mut rows = stmt.query([agent, &certificate_id])?;
        rows.next()?.map(deployment_from_row).transpose()?
    };
    tx.execute(
        "INSERT INTO deployments (agent, certificate_id, version, serial, verified, served_serial,
            hook_status, hook_output, error, rolled_back, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (agent, certificate_id) DO UPDATE SET
            version = excluded.version, serial = excluded.serial,
            verified = excluded.verified, served_serial = excluded.served_serial,
            hook_status = excluded.hook_status, hook_output = excluded.hook_output,
            error = excluded.error, rolled_back = excluded.rolled_back,
            reported_at = excluded.reported_at",
        params![
            agent,
            certificate_id,
            report.version,
            report.serial,
            report.verified,
            report.served_serial,
            report.hook_status,
            report.hook_output,
            report.error,
            report.rolled_back,
            time::now(),
        ],
    )?;
    tx.commit()?;
    Ok(previous)
}

pub(super) fn deployments(
    conn: &Connection,
    certificate: Option<&str>,
) -> Result<Vec<DeploymentRecord>, Fail> {
    let mut stmt;
    let mut rows = match certificate {
        Some(name) => {
            stmt = conn.prepare(&format!(
                "{DEPLOYMENT_COLUMNS} WHERE c.name = ?1 ORDER BY c.name, d.agent"
            ))?;
            stmt.query([name])?
        }
        None => {
            stmt = conn.prepare(&format!("{DEPLOYMENT_COLUMNS} ORDER BY c.name, d.agent"))?;
            stmt.query([])?
        }
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(deployment_from_row(row)?);
    }
    Ok(out)
}

fn deployment_from_row(row: &Row<'_>) -> Result<DeploymentRecord, Fail> {
    Ok(DeploymentRecord {
        agent: row.get(0)?,
        report: DeploymentReport {
            certificate: row.get(1)?,
            version: to_u32(row.get(2)?, "deployments.version")?,
            serial: row.get(3)?,
            verified: row.get(4)?,
            served_serial: row.get(5)?,
            hook_status: row.get(6)?,
            hook_output: row.get(7)?,
            error: row.get(8)?,
            rolled_back: row.get(9)?,
        },
        reported_at: row.get(10)?,
    })
}

pub(super) fn live_challenges(
    conn: &Connection,
    now: UnixTime,
) -> Result<Vec<Http01Challenge>, Fail> {
    let mut stmt = conn.prepare(
        "SELECT h.token, h.host, h.key_authorization, c.name, h.expires_at
         FROM http01_challenges h JOIN certificates c ON c.id = h.certificate_id
         WHERE h.expires_at > ?1 ORDER BY h.token",
    )?;
    let mut rows = stmt.query([now])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(Http01Challenge {
            token: row.get(0)?,
            host: row.get(1)?,
            key_authorization: row.get(2)?,
            certificate: row.get(3)?,
            expires_at: row.get(4)?,
        });
    }
    Ok(out)
}

pub(super) fn confirm_challenge(conn: &Connection, token: &str, agent: &str) -> Result<bool, Fail> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM http01_challenges WHERE token = ?1",
            [token],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO http01_confirmations (token, agent, confirmed_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (token, agent) DO UPDATE SET confirmed_at = excluded.confirmed_at",
        params![token, agent, time::now()],
    )?;
    Ok(true)
}

pub(super) fn challenge_confirmations(conn: &Connection, token: &str) -> Result<Vec<String>, Fail> {
    let mut stmt =
        conn.prepare("SELECT agent FROM http01_confirmations WHERE token = ?1 ORDER BY agent")?;
    let rows = stmt.query_map([token], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn revision(conn: &Connection) -> Result<u64, Fail> {
    let value: i64 = conn.query_row("SELECT value FROM revision WHERE id = 1", [], |r| r.get(0))?;
    u64::try_from(value).map_err(|_| corrupt(format!("revision {value} is negative")))
}
