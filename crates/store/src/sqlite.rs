//! [`SqliteStore`]: the embedded default [`Store`], one SQLite file in the data directory.
//!
//! One [`rusqlite::Connection`] sits behind a mutex; every trait call on a database file runs
//! on tokio's blocking pool and takes the lock only there, never across an `.await`. An
//! in-memory database does no I/O, so its calls run in place (no thread hop): that keeps the
//! renewal simulation, which makes millions of small calls, fast. The database is opened in WAL
//! mode with foreign keys on, and migrated forward with versioned steps (`schema`). Private
//! keys and account credentials are sealed by the [`Sealer`] before they reach SQL; the
//! associated data names the row, so a blob copied into another row does not open.
//!
//! The queries live by table: `certificates`, `versions`, and the smaller tables in
//! `records`. They use plain SQL (`ON CONFLICT`, `BIGINT`, `COALESCE`) so that a PostgreSQL
//! twin is a straight port.

mod certificates;
mod claims;
mod events;
mod fleet;
mod presented;
mod records;
mod schema;
mod versions;

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::expiry::ExpiryWatch;
use certfleet_core::policy::AriWindow;
use certfleet_core::time::UnixTime;
use certfleet_core::{
    AccountRecord, AgentSeen, Certificate, CertificateStatus, ContactsOverride, DeploymentRecord,
    DeploymentReport, Event, EventKind, EventListener, EventQuery, Http01Challenge, Labels,
    NewCertificate, NewEvent, NewToken, NewVersion, PresentedChallenge, RevocationReason, Secret,
    Source, Store, StoreError, TokenRecord, Version,
};
use rusqlite::Connection;

use crate::seal::Sealer;

pub use schema::SCHEMA_VERSION;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Prepared statements kept per connection (every query certfleet runs fits).
const STATEMENT_CACHE: usize = 96;
/// Mode of a database file created by certfleet.
const DB_FILE_MODE: u32 = 0o600;

/// The SQLite store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    sealer: Sealer,
    label: String,
    listener: RwLock<Option<Arc<dyn EventListener>>>,
    watch: Mutex<Watch>,
    /// In-memory: run calls in place instead of on the blocking pool.
    in_place: bool,
}

/// Callbacks of [`Store::on_change`] and what they last saw.
#[derive(Default)]
struct Watch {
    callbacks: Vec<Box<dyn Fn(u64) + Send + Sync>>,
    /// `Connection::total_changes` after the last call.
    changes: u64,
    /// The revision the callbacks were last told.
    revision: u64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.inner.label)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating it with mode 0600 if missing) and migrate the database at `path`.
    /// Refuses a database written by a newer certfleet.
    pub fn open(path: &Path, sealer: Sealer) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(backend)?;
        Self::setup(conn, sealer, path.display().to_string(), true)
    }

    /// A private in-memory database, for tests and dry runs.
    pub fn open_in_memory(sealer: Sealer) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::setup(conn, sealer, ":memory:".to_string(), false)
    }

    fn setup(
        mut conn: Connection,
        sealer: Sealer,
        label: String,
        wal: bool,
    ) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans must not depend on bound values: otherwise (SQLite's STAT4) a cached
        // statement such as "next_due <= ?" is compiled again whenever the value changes,
        // which made every scheduler pass re-parse its queries.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(backend)?;
        if wal {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(backend)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(database = %label, %mode, "SQLite refused WAL journal mode");
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        schema::migrate(&mut conn, &label)?;
        check_key(&conn, &sealer, &label)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                sealer,
                in_place: !wal,
                label,
                listener: RwLock::new(None),
                watch: Mutex::new(Watch::default()),
            }),
        })
    }

    /// Tell the listener, if any, about a stored event (outside the connection's lock).
    fn announce(&self, event: &Event) {
        let listener = self
            .inner
            .listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listener) = listener {
            listener.event_recorded(event);
        }
    }

    /// Run `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Sealer) -> Result<T, Fail> + Send + 'static,
    {
        if self.inner.in_place {
            let mut conn = self
                .inner
                .conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            return f(&mut conn, &self.inner.sealer).map_err(StoreError::from);
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call left no open transaction behind (rusqlite rolls back on drop),
            // so the connection is still usable.
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut conn, &inner.sealer).map_err(StoreError::from);
            inner.notify_if_changed(&conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
}

impl Inner {
    /// After a call that wrote rows, tell the [`Store::on_change`] callbacks the new revision
    /// if it moved. Runs on the blocking pool with the connection locked.
    fn notify_if_changed(&self, conn: &Connection) {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        let changes = conn.total_changes();
        if watch.callbacks.is_empty() || changes == watch.changes {
            watch.changes = changes;
            return;
        }
        watch.changes = changes;
        match fleet::revision(conn) {
            Ok(revision) if revision != watch.revision => {
                watch.revision = revision;
                for callback in &watch.callbacks {
                    callback(revision);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "could not read the revision after a write"),
        }
    }
}

/// `meta` row holding a sealed known value, written on first open.
const KEY_CHECK: &str = "key-check";
/// What the key check seals; its associated data names the row.
const KEY_CHECK_PLAINTEXT: &[u8] = b"certfleet key check";
const KEY_CHECK_AAD: &[u8] = b"certfleet/v1/meta/key-check";

/// Refuse to open a store with a key-encryption key other than the one it was written with,
/// before anything is read or written with the wrong key.
fn check_key(conn: &Connection, sealer: &Sealer, label: &str) -> Result<(), StoreError> {
    use rusqlite::OptionalExtension;
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [KEY_CHECK], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    match stored {
        Some(blob) => match sealer.open(&blob, KEY_CHECK_AAD) {
            Ok(plain) if plain == KEY_CHECK_PLAINTEXT => Ok(()),
            _ => Err(StoreError::Unseal(format!(
                "database {label}: this key-encryption key is not the one the store was written with"
            ))),
        },
        None => {
            let blob = sealer.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD);
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![KEY_CHECK, blob],
            )
            .map_err(backend)?;
            Ok(())
        }
    }
}

/// Create the database file with mode 0600 unless it exists; warn if an existing one is
/// open to group or others.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DB_FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map_err(|e| StoreError::Backend(Box::new(e)))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    database = %path.display(),
                    mode = format!("{:03o}", mode & 0o777),
                    "database file is accessible by group or others; consider `chmod 600`"
                );
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Backend(Box::new(io::Error::new(
            e.kind(),
            format!("cannot create database file {}: {e}", path.display()),
        )))),
    }
}

/// A failure inside a query function: SQL errors convert with `?`, store errors pass through.
#[derive(Debug)]
enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Sql(e) => backend(e),
            Fail::Store(e) => e,
        }
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn cert_not_found(name: &str) -> Fail {
    StoreError::NotFound(format!("certificate {name:?}")).into()
}

fn corrupt(what: String) -> Fail {
    StoreError::Corrupt(what).into()
}

/// Parse a stored enum or other text column.
fn parse<T: FromStr>(text: &str, column: &str) -> Result<T, Fail>
where
    T::Err: fmt::Display,
{
    text.parse()
        .map_err(|e| corrupt(format!("column {column}: {e}")))
}

/// Convert a stored integer to `u32`.
fn to_u32(value: i64, column: &str) -> Result<u32, Fail> {
    u32::try_from(value).map_err(|_| corrupt(format!("column {column}: {value} is out of range")))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_certificate(&self, new: &NewCertificate) -> Result<Certificate, StoreError> {
        let new = new.clone();
        self.call(move |c, _| certificates::create(c, &new)).await
    }

    async fn certificate(&self, name: &str) -> Result<Option<Certificate>, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| certificates::get(c, &name)).await
    }

    async fn certificates(&self) -> Result<Vec<Certificate>, StoreError> {
        self.call(|c, _| certificates::list(c)).await
    }

    async fn delete_certificate(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| certificates::delete(c, &name)).await
    }

    async fn set_status(
        &self,
        name: &str,
        status: CertificateStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (name, error) = (name.to_string(), error.map(str::to_string));
        self.call(move |c, _| certificates::set_status(c, &name, status, error.as_deref()))
            .await
    }

    async fn update_declaration(
        &self,
        name: &str,
        declaration: &NewCertificate,
    ) -> Result<Certificate, StoreError> {
        let (name, declaration) = (name.to_string(), declaration.clone());
        self.call(move |c, _| certificates::update_declaration(c, &name, &declaration))
            .await
    }

    async fn set_order_url(&self, name: &str, url: Option<&str>) -> Result<(), StoreError> {
        let (name, url) = (name.to_string(), url.map(str::to_string));
        self.call(move |c, _| certificates::set_order_url(c, &name, url.as_deref()))
            .await
    }

    async fn add_version(&self, name: &str, version: NewVersion) -> Result<Version, StoreError> {
        let name = name.to_string();
        self.call(move |c, s| versions::add(c, s, &name, &version))
            .await
    }

    async fn versions(&self, name: &str) -> Result<Vec<Version>, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| versions::list(c, &name)).await
    }

    async fn version_key(&self, name: &str, seq: u32) -> Result<Secret, StoreError> {
        let name = name.to_string();
        self.call(move |c, s| versions::key(c, s, &name, seq)).await
    }

    async fn account(
        &self,
        issuer: &str,
        directory_url: &str,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let (issuer, url) = (issuer.to_string(), directory_url.to_string());
        self.call(move |c, s| records::account(c, s, &issuer, &url))
            .await
    }

    async fn save_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        let account = account.clone();
        self.call(move |c, s| records::save_account(c, s, &account))
            .await
    }

    async fn put_challenge(&self, challenge: &Http01Challenge) -> Result<(), StoreError> {
        let challenge = challenge.clone();
        self.call(move |c, _| records::put_challenge(c, &challenge))
            .await
    }

    async fn challenge_response(
        &self,
        token: &str,
        host: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        let (token, host) = (token.to_string(), host.to_string());
        self.call(move |c, _| records::challenge_response(c, &token, &host, now))
            .await
    }

    async fn remove_challenges(&self, tokens: &[String]) -> Result<(), StoreError> {
        let tokens = tokens.to_vec();
        self.call(move |c, _| records::remove_challenges(c, &tokens))
            .await
    }

    async fn purge_challenges(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.call(move |c, _| records::purge_challenges(c, now))
            .await
    }

    async fn append_event(
        &self,
        certificate: Option<&str>,
        kind: EventKind,
        message: &str,
    ) -> Result<(), StoreError> {
        let new = NewEvent {
            certificate: certificate.map(str::to_string),
            kind,
            message: message.to_string(),
            details: Default::default(),
        };
        self.record_event(&new).await.map(|_| ())
    }

    async fn events(
        &self,
        certificate: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let certificate = certificate.map(str::to_string);
        self.call(move |c, _| records::events(c, certificate.as_deref(), limit))
            .await
    }

    async fn record_event(&self, event: &NewEvent) -> Result<Event, StoreError> {
        let new = event.clone();
        let stored = self.call(move |c, _| events::record(c, &new)).await?;
        self.announce(&stored);
        Ok(stored)
    }

    async fn query_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let query = query.clone();
        self.call(move |c, _| events::query(c, &query)).await
    }

    fn set_event_listener(&self, listener: Arc<dyn EventListener>) {
        *self
            .inner
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    async fn expiry_watch(&self) -> Result<Vec<ExpiryWatch>, StoreError> {
        self.call(|c, _| events::expiry_watch(c)).await
    }

    async fn record_expiry_threshold(
        &self,
        name: &str,
        seq: u32,
        threshold: &str,
    ) -> Result<bool, StoreError> {
        let (name, threshold) = (name.to_string(), threshold.to_string());
        self.call(move |c, _| events::record_threshold(c, &name, seq, &threshold))
            .await
    }

    async fn set_source(&self, name: &str, source: Source, issuer: &str) -> Result<(), StoreError> {
        let (name, issuer) = (name.to_string(), issuer.to_string());
        self.call(move |c, _| certificates::set_source(c, &name, source, &issuer))
            .await
    }
    async fn set_labels(&self, name: &str, labels: &Labels) -> Result<(), StoreError> {
        let (name, labels) = (name.to_string(), labels.clone());
        self.call(move |c, _| certificates::set_labels(c, &name, &labels))
            .await
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let token = token.clone();
        self.call(move |c, _| fleet::create_token(c, &token)).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_string();
        self.call(move |c, _| fleet::token_by_hash(c, &hash)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.call(|c, _| fleet::tokens(c)).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| fleet::revoke_token(c, &name)).await
    }

    async fn touch_token(&self, name: &str, seen: AgentSeen) -> Result<(), StoreError> {
        let name = name.to_string();
        self.call(move |c, _| fleet::touch_token(c, &name, seen))
            .await
    }

    async fn record_deployment(
        &self,
        agent: &str,
        report: &DeploymentReport,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        let (agent, report) = (agent.to_string(), report.clone());
        self.call(move |c, _| fleet::record_deployment(c, &agent, &report))
            .await
    }

    async fn deployments(
        &self,
        certificate: Option<&str>,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        let certificate = certificate.map(str::to_string);
        self.call(move |c, _| fleet::deployments(c, certificate.as_deref()))
            .await
    }

    async fn live_challenges(&self, now: UnixTime) -> Result<Vec<Http01Challenge>, StoreError> {
        self.call(move |c, _| fleet::live_challenges(c, now)).await
    }

    async fn confirm_challenge(&self, token: &str, agent: &str) -> Result<bool, StoreError> {
        let (token, agent) = (token.to_string(), agent.to_string());
        self.call(move |c, _| fleet::confirm_challenge(c, &token, &agent))
            .await
    }

    async fn challenge_confirmations(&self, token: &str) -> Result<Vec<String>, StoreError> {
        let token = token.to_string();
        self.call(move |c, _| fleet::challenge_confirmations(c, &token))
            .await
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        self.call(|c, _| fleet::revision(c)).await
    }

    fn on_change(&self, notify: Box<dyn Fn(u64) + Send + Sync>) {
        let mut watch = self
            .inner
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        watch.callbacks.push(notify);
    }

    async fn record_presented(&self, presented: &[PresentedChallenge]) -> Result<(), StoreError> {
        let presented = presented.to_vec();
        self.call(move |c, _| presented::record(c, &presented))
            .await
    }

    async fn presented_challenges(&self) -> Result<Vec<PresentedChallenge>, StoreError> {
        self.call(|c, _| presented::list(c)).await
    }

    async fn forget_presented(&self, solver: &str, tokens: &[String]) -> Result<(), StoreError> {
        let (solver, tokens) = (solver.to_string(), tokens.to_vec());
        self.call(move |c, _| presented::forget(c, &solver, &tokens))
            .await
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Certificate>, StoreError> {
        let owner = owner.to_string();
        self.call(move |c, _| claims::claim_due(c, &owner, now, until, limit))
            .await
    }

    async fn claim(
        &self,
        name: &str,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<Option<Certificate>, StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |c, _| claims::claim(c, &name, &owner, now, until))
            .await
    }

    async fn extend_claim(
        &self,
        name: &str,
        owner: &str,
        until: UnixTime,
    ) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |c, _| claims::extend_claim(c, &name, &owner, until))
            .await
    }

    async fn release_claim(
        &self,
        name: &str,
        owner: &str,
        next_due: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |c, _| claims::release_claim(c, &name, &owner, next_due))
            .await
    }

    async fn release_all_claims(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.call(move |c, _| claims::release_all_claims(c, now))
            .await
    }

    async fn next_due(&self) -> Result<Option<UnixTime>, StoreError> {
        self.call(|c, _| claims::next_due(c)).await
    }

    async fn set_retry_after(&self, name: &str, at: Option<UnixTime>) -> Result<(), StoreError> {
        let name = name.to_string();
        self.call(move |c, _| certificates::set_retry_after(c, &name, at))
            .await
    }

    async fn set_pending_key(&self, name: &str, key: Option<&Secret>) -> Result<(), StoreError> {
        let (name, key) = (name.to_string(), key.cloned());
        self.call(move |c, s| versions::set_pending_key(c, s, &name, key.as_ref()))
            .await
    }

    async fn pending_key(&self, name: &str) -> Result<Option<Secret>, StoreError> {
        let name = name.to_string();
        self.call(move |c, s| versions::pending_key(c, s, &name))
            .await
    }

    async fn version(&self, name: &str, seq: u32) -> Result<Option<Version>, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| versions::get(c, &name, seq)).await
    }

    async fn set_ari(
        &self,
        name: &str,
        seq: u32,
        window: Option<AriWindow>,
        fetch_at: Option<UnixTime>,
    ) -> Result<(), StoreError> {
        let name = name.to_string();
        self.call(move |c, _| versions::set_ari(c, &name, seq, window, fetch_at))
            .await
    }

    async fn mark_revoked(
        &self,
        name: &str,
        seq: u32,
        at: UnixTime,
        reason: RevocationReason,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c, _| versions::mark_revoked(c, &name, seq, at, reason))
            .await
    }

    async fn contacts_override(
        &self,
        issuer: &str,
        directory_url: &str,
    ) -> Result<Option<ContactsOverride>, StoreError> {
        let (issuer, url) = (issuer.to_string(), directory_url.to_string());
        self.call(move |c, _| records::contacts_override(c, &issuer, &url))
            .await
    }

    async fn set_contacts_override(
        &self,
        issuer: &str,
        directory_url: &str,
        contacts: Option<&ContactsOverride>,
    ) -> Result<(), StoreError> {
        let (issuer, url) = (issuer.to_string(), directory_url.to_string());
        let contacts = contacts.cloned();
        self.call(move |c, _| records::set_contacts_override(c, &issuer, &url, contacts.as_ref()))
            .await
    }
}
