//! Queries on `presented_challenges`: responses recorded before they are published, so that a
//! restart can withdraw them. (The live rows of `http01_challenges` that responders keep in
//! memory are read in `fleet.rs`.)

use certfleet_core::{PendingChallenge, PresentedChallenge, Secret};
use rusqlite::{Connection, params};

use super::{Fail, parse};

/// Insert or replace each record, in one transaction.
pub(super) fn record(conn: &mut Connection, presented: &[PresentedChallenge]) -> Result<(), Fail> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO presented_challenges (solver, token, kind, identifier, wildcard,
                key_authorization, certificate, presented_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (solver, token) DO UPDATE SET
                kind = excluded.kind,
                identifier = excluded.identifier,
                wildcard = excluded.wildcard,
                key_authorization = excluded.key_authorization,
                certificate = excluded.certificate,
                presented_at = excluded.presented_at",
        )?;
        for p in presented {
            let c = &p.challenge;
            stmt.execute(params![
                p.solver,
                c.token,
                c.kind.as_str(),
                c.identifier,
                c.wildcard,
                c.key_authorization.expose(),
                c.certificate,
                p.presented_at,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Every record, oldest first.
pub(super) fn list(conn: &Connection) -> Result<Vec<PresentedChallenge>, Fail> {
    let mut stmt = conn.prepare(
        "SELECT solver, token, kind, identifier, wildcard, key_authorization, certificate,
                presented_at
         FROM presented_challenges ORDER BY presented_at, solver, token",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(PresentedChallenge {
            solver: r.get(0)?,
            challenge: PendingChallenge {
                token: r.get(1)?,
                kind: parse(&r.get::<_, String>(2)?, "presented_challenges.kind")?,
                identifier: r.get(3)?,
                wildcard: r.get(4)?,
                key_authorization: Secret::new(r.get::<_, String>(5)?),
                certificate: r.get(6)?,
            },
            presented_at: r.get(7)?,
        });
    }
    Ok(out)
}

/// Forget the records of `solver` for `tokens`.
pub(super) fn forget(conn: &mut Connection, solver: &str, tokens: &[String]) -> Result<(), Fail> {
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare("DELETE FROM presented_challenges WHERE solver = ?1 AND token = ?2")?;
        for token in tokens {
            stmt.execute(params![solver, token])?;
        }
    }
    tx.commit()?;
    Ok(())
}
