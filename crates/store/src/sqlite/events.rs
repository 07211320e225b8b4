//! The event log with structured details (`events`), read back with filters, and the expiry
//! thresholds recorded per version (`expiry_alerts`).

use certfleet_core::expiry::ExpiryWatch;
use certfleet_core::time;
use certfleet_core::{Event, EventDetails, EventKind, EventQuery, NewEvent, StoreError};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::certificates::id_and_current;
use super::{Fail, corrupt, parse, to_u32};

/// Append `new` and return it as stored.
pub(super) fn record(conn: &Connection, new: &NewEvent) -> Result<Event, Fail> {
    let at = time::now();
    let details = if new.details.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&new.details).map_err(|e| StoreError::Backend(e.into()))?)
    };
    conn.execute(
        "INSERT INTO events (at, certificate, kind, message, details) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, new.certificate, new.kind.as_str(), new.message, details],
    )?;
    Ok(Event {
        id: conn.last_insert_rowid(),
        at,
        certificate: new.certificate.clone(),
        kind: new.kind,
        message: new.message.clone(),
        details: new.details.clone(),
    })
}

/// Events matching `q`, newest first.
pub(super) fn query(conn: &Connection, q: &EventQuery) -> Result<Vec<Event>, Fail> {
    let mut sql =
        String::from("SELECT id, at, certificate, kind, message, details FROM events WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(name) = &q.certificate {
        args.push(Value::Text(name.clone()));
        sql.push_str(&format!(" AND certificate = ?{}", args.len()));
    }
    if let Some(since) = q.since {
        args.push(Value::Integer(since));
        sql.push_str(&format!(" AND at >= ?{}", args.len()));
    }
    if !q.kinds.is_empty() {
        let mut marks = Vec::new();
        for kind in &q.kinds {
            args.push(Value::Text(kind.as_str().to_string()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
    }
    args.push(Value::Integer(i64::from(q.limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

fn from_row(row: &Row<'_>) -> Result<Event, Fail> {
    let details: Option<String> = row.get(5)?;
    let details = match details {
        Some(json) => serde_json::from_str::<EventDetails>(&json)
            .map_err(|e| corrupt(format!("column events.details: {e}")))?,
        None => EventDetails::default(),
    };
    Ok(Event {
        id: row.get(0)?,
        at: row.get(1)?,
        certificate: row.get(2)?,
        kind: parse::<EventKind>(&row.get::<_, String>(3)?, "events.kind")?,
        message: row.get(4)?,
        details,
    })
}

/// The current version of every certificate, with its recorded thresholds (one row per
/// threshold, folded here; no string aggregation, so the query ports as it is).
pub(super) fn expiry_watch(conn: &Connection) -> Result<Vec<ExpiryWatch>, Fail> {
    let mut stmt = conn.prepare(
        "SELECT c.name, v.seq, v.not_before, v.not_after, a.threshold
         FROM certificates c
         JOIN versions v ON v.certificate_id = c.id AND v.seq = c.current_version
         LEFT JOIN expiry_alerts a ON a.certificate_id = v.certificate_id AND a.seq = v.seq
         ORDER BY c.name, a.threshold",
    )?;
    let mut rows = stmt.query([])?;
    let mut out: Vec<ExpiryWatch> = Vec::new();
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let threshold: Option<String> = row.get(4)?;
        if out.last().is_none_or(|w| w.certificate != name) {
            out.push(ExpiryWatch {
                certificate: name,
                version: to_u32(row.get(1)?, "versions.seq")?,
                not_before: row.get(2)?,
                not_after: row.get(3)?,
                recorded: Vec::new(),
            });
        }
        if let (Some(t), Some(watch)) = (threshold, out.last_mut()) {
            watch.recorded.push(t);
        }
    }
    Ok(out)
}

/// Insert the threshold unless it is there; whether it was new.
pub(super) fn record_threshold(
    conn: &Connection,
    name: &str,
    seq: u32,
    threshold: &str,
) -> Result<bool, Fail> {
    let (id, _) = id_and_current(conn, name)?;
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM versions WHERE certificate_id = ?1 AND seq = ?2)",
        params![id, seq],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(StoreError::NotFound(format!("version {seq} of certificate {name:?}")).into());
    }
    let inserted = conn.execute(
        "INSERT INTO expiry_alerts (certificate_id, seq, threshold, recorded_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (certificate_id, seq, threshold) DO NOTHING",
        params![id, seq, threshold, time::now()],
    )?;
    Ok(inserted == 1)
}
