//! The database schema and its forward migrations.
//!
//! The schema version lives in `PRAGMA user_version`; migration `i` (0-based) takes the
//! database from version `i` to `i + 1` inside one transaction, together with the version
//! bump. Column types are chosen to port verbatim to PostgreSQL (`BIGINT` for Unix seconds,
//! `TEXT`, and `BLOB` which becomes `BYTEA`). Never edit a released migration: append one.

use certfleet_core::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Forward migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    // 1: certificates, their versions, ACME accounts, HTTP-01 responses and the event log.
    "CREATE TABLE certificates (
        id               TEXT PRIMARY KEY,
        name             TEXT NOT NULL UNIQUE,
        domains          TEXT NOT NULL,
        issuer           TEXT NOT NULL,
        key_kind         TEXT NOT NULL,
        challenge        TEXT NOT NULL,
        source           TEXT NOT NULL,
        status           TEXT NOT NULL,
        current_version  INTEGER,
        failure_streak   INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT,
        next_due         BIGINT,
        order_url        TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL
    );
    CREATE INDEX certificates_next_due ON certificates (next_due);

    CREATE TABLE versions (
        certificate_id   TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
        seq              INTEGER NOT NULL,
        serial           TEXT NOT NULL,
        not_before       BIGINT NOT NULL,
        not_after        BIGINT NOT NULL,
        leaf_pem         TEXT NOT NULL,
        chain_pem        TEXT NOT NULL,
        key_kind         TEXT NOT NULL,
        sealed_key       BLOB NOT NULL,
        issued_at        BIGINT NOT NULL,
        order_url        TEXT,
        replaces         INTEGER,
        revoked_at       BIGINT,
        PRIMARY KEY (certificate_id, seq)
    );

    CREATE TABLE accounts (
        issuer              TEXT NOT NULL,
        directory_url       TEXT NOT NULL,
        account_url         TEXT NOT NULL,
        sealed_credentials  BLOB NOT NULL,
        created_at          BIGINT NOT NULL,
        PRIMARY KEY (issuer, directory_url)
    );

    CREATE TABLE http01_challenges (
        token              TEXT PRIMARY KEY,
        host               TEXT NOT NULL,
        key_authorization  TEXT NOT NULL,
        certificate_id     TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
        expires_at         BIGINT NOT NULL
    );
    CREATE INDEX http01_challenges_certificate ON http01_challenges (certificate_id);
    CREATE INDEX http01_challenges_expires ON http01_challenges (expires_at);

    CREATE TABLE events (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        at           BIGINT NOT NULL,
        certificate  TEXT,
        kind         TEXT NOT NULL,
        message      TEXT NOT NULL
    );
    CREATE INDEX events_certificate ON events (certificate, id);",
    // 2: small named values, such as the key check that detects a wrong key-encryption key.
    "CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  BLOB NOT NULL
    );",
    // 3: what each version was issued for (names as JSON, issuer), so a changed declaration
    // shows; versions stored before this come from the declaration, which could not change.
    "ALTER TABLE versions ADD COLUMN domains TEXT;
    ALTER TABLE versions ADD COLUMN issuer TEXT;
    UPDATE versions SET
        domains = (SELECT c.domains FROM certificates c WHERE c.id = versions.certificate_id),
        issuer = (SELECT c.issuer FROM certificates c WHERE c.id = versions.certificate_id);",
    // 4: structured event details (JSON), reading events by time, and the expiry thresholds
    // each version has crossed (recorded once per version, by whichever replica saw it first).
    "ALTER TABLE events ADD COLUMN details TEXT;
    CREATE INDEX events_at ON events (at);
    CREATE TABLE expiry_alerts (
        certificate_id   TEXT NOT NULL,
        seq              INTEGER NOT NULL,
        threshold        TEXT NOT NULL,
        recorded_at      BIGINT NOT NULL,
        PRIMARY KEY (certificate_id, seq, threshold),
        FOREIGN KEY (certificate_id, seq) REFERENCES versions (certificate_id, seq)
            ON DELETE CASCADE
    );",
    // 5: the fleet: labels on certificates, API tokens (agents are tokens of role agent),
    // agents' deployment reports, HTTP-01 confirmations, and the revision agents watch,
    // bumped by triggers so that every writer (issuance, renewal, API) moves it.
    "ALTER TABLE certificates ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

    CREATE TABLE tokens (
        name             TEXT PRIMARY KEY,
        role             TEXT NOT NULL,
        selector         TEXT,
        token_hash       TEXT NOT NULL UNIQUE,
        created_at       BIGINT NOT NULL,
        revoked_at       BIGINT,
        last_seen        BIGINT,
        clock_offset_ms  BIGINT,
        serves_http01    INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE deployments (
        agent            TEXT NOT NULL REFERENCES tokens (name) ON DELETE CASCADE,
        certificate_id   TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
        version          INTEGER NOT NULL,
        serial           TEXT NOT NULL,
        verified         INTEGER NOT NULL,
        served_serial    TEXT,
        hook_status      INTEGER,
        hook_output      TEXT,
        error            TEXT,
        rolled_back      INTEGER NOT NULL,
        reported_at      BIGINT NOT NULL,
        PRIMARY KEY (agent, certificate_id)
    );
    CREATE INDEX deployments_certificate ON deployments (certificate_id);

    CREATE TABLE http01_confirmations (
        token         TEXT NOT NULL REFERENCES http01_challenges (token) ON DELETE CASCADE,
        agent         TEXT NOT NULL,
        confirmed_at  BIGINT NOT NULL,
        PRIMARY KEY (token, agent)
    );

    CREATE TABLE revision (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        value  BIGINT NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);
    CREATE TRIGGER revision_versions AFTER INSERT ON versions
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_certificates_update
        AFTER UPDATE OF current_version, labels, domains ON certificates
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_certificates_delete AFTER DELETE ON certificates
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_challenges_insert AFTER INSERT ON http01_challenges
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_challenges_update AFTER UPDATE ON http01_challenges
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_challenges_delete AFTER DELETE ON http01_challenges
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_tokens_insert AFTER INSERT ON tokens
        BEGIN UPDATE revision SET value = value + 1; END;
    CREATE TRIGGER revision_tokens_update AFTER UPDATE OF revoked_at, selector ON tokens
        BEGIN UPDATE revision SET value = value + 1; END;",
    // 6: a solver per identifier or suffix (JSON of SolverRules), and every challenge response
    // recorded before it is published, so that a restarted server withdraws it. No foreign
    // key: a response outlives the removal of its certificate until it is withdrawn.
    "ALTER TABLE certificates ADD COLUMN solvers TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE presented_challenges (
        solver             TEXT NOT NULL,
        token              TEXT NOT NULL,
        kind               TEXT NOT NULL,
        identifier         TEXT NOT NULL,
        wildcard           INTEGER NOT NULL,
        key_authorization  TEXT NOT NULL,
        certificate        TEXT NOT NULL,
        presented_at       BIGINT NOT NULL,
        PRIMARY KEY (solver, token)
    );",
    // 7: the contacts the CA confirmed for each account (JSON array of mailto: URLs).
    "ALTER TABLE accounts ADD COLUMN contacts TEXT NOT NULL DEFAULT '[]';",
    // 8: renewal (issue 6): settings, the CA's Retry-After, ARI windows, claims with an owner
    // and an expiry, and the sealed key of an order in flight. Certificates without a
    // schedule become due, so the scheduler computes one.
    "ALTER TABLE certificates ADD COLUMN profile TEXT;
    ALTER TABLE certificates ADD COLUMN renew_before TEXT;
    ALTER TABLE certificates ADD COLUMN retry_after BIGINT;
    ALTER TABLE certificates ADD COLUMN ari_fetch_at BIGINT;
    ALTER TABLE certificates ADD COLUMN claim_owner TEXT;
    ALTER TABLE certificates ADD COLUMN claim_until BIGINT;
    ALTER TABLE certificates ADD COLUMN pending_key BLOB;
    ALTER TABLE versions ADD COLUMN ari_start BIGINT;
    ALTER TABLE versions ADD COLUMN ari_end BIGINT;
    UPDATE certificates SET next_due = updated_at WHERE next_due IS NULL AND source = 'acme';",
    // 9: revocation (issue 7): why a version was revoked; and contacts a person set with
    // `certfleet account update`, kept with the configured contacts of that moment so that
    // a later edit of the configuration is noticed (NULL: the configuration rules).
    "ALTER TABLE versions ADD COLUMN revocation_reason TEXT;
    ALTER TABLE accounts ADD COLUMN override_contacts TEXT;
    ALTER TABLE accounts ADD COLUMN override_configured TEXT;
    ALTER TABLE accounts ADD COLUMN override_at BIGINT;",
];

/// A database written by a newer certfleet than this one.
#[derive(Debug, thiserror::Error)]
#[error(
    "database {database} has schema version {found}, newer than version {SCHEMA_VERSION} \
     that this certfleet understands; run the newer certfleet (or restore a backup)"
)]
struct SchemaTooNew {
    database: String,
    found: i64,
}

/// Bring the database up to [`SCHEMA_VERSION`], one transaction per step.
pub(super) fn migrate(conn: &mut Connection, database: &str) -> Result<(), StoreError> {
    let backend = |e: rusqlite::Error| StoreError::Backend(Box::new(e));
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(Box::new(SchemaTooNew {
            database: database.to_string(),
            found,
        })));
    }
    let start = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {found}")))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(database, version = index + 1, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "mem").unwrap();
        migrate(&mut conn, "mem").unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);

        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, "mem").unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
        assert!(
            err.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
    }
}
