//! The storage contract ([`Store`]) that every backend implements.
//!
//! Callers hold an `Arc<dyn Store>`; SQLite is the embedded default and a PostgreSQL
//! implementation for several replicas slots in behind the same trait. Private keys cross
//! this boundary in plaintext ([`Secret`]) and are sealed by the backend, which binds each
//! ciphertext to its row so that ciphertexts cannot be swapped between rows.

use std::sync::Arc;

use async_trait::async_trait;

use crate::challenge::Http01Challenge;
use crate::event::{EventListener, EventQuery, NewEvent};
use crate::expiry::ExpiryWatch;
use crate::fleet::{AgentSeen, DeploymentRecord, DeploymentReport, NewToken, TokenRecord};
use crate::labels::Labels;
use crate::model::{
    AccountRecord, Certificate, CertificateStatus, Event, EventKind, NewCertificate, NewVersion,
    Source, Version,
};
use crate::policy::AriWindow;
use crate::revocation::RevocationReason;
use crate::rules::PresentedChallenge;
use crate::secret::Secret;
use crate::time::UnixTime;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A certificate with this name already exists.
    #[error("certificate {0:?} already exists")]
    AlreadyExists(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Sealed data failed to open: wrong key-encryption key, or a row was tampered with.
    #[error("sealed data for {0} could not be opened (wrong key-encryption key or tampered row)")]
    Unseal(String),
    /// Stored data that does not parse.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, SQL, connection).
    #[error("store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persistent state of the control plane.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Declare a certificate; fails with [`StoreError::AlreadyExists`] for a taken name.
    async fn create_certificate(&self, new: &NewCertificate) -> Result<Certificate, StoreError>;

    /// One certificate by name.
    async fn certificate(&self, name: &str) -> Result<Option<Certificate>, StoreError>;

    /// All certificates, by name.
    async fn certificates(&self) -> Result<Vec<Certificate>, StoreError>;

    /// Remove a certificate with its versions and live challenges; false if there was none.
    async fn delete_certificate(&self, name: &str) -> Result<bool, StoreError>;

    /// Record a status change. `Failed` increments the failure streak and keeps `error`;
    /// `Issuing` and `Pending` keep the streak; `Valid` resets streak and error.
    async fn set_status(
        &self,
        name: &str,
        status: CertificateStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Replace what a certificate is declared as (names, issuer, key kind, challenge, solvers,
    /// profile, `renew_before`); its versions are kept, the current one stays current until a
    /// new one is added. When what a version is issued for changed (the set of names, key kind,
    /// issuer, challenge, solvers), an order in flight for the old declaration is forgotten
    /// with its kept key; an ACME certificate becomes due now. Returns the updated
    /// certificate; [`StoreError::NotFound`] if there is none.
    async fn update_declaration(
        &self,
        name: &str,
        declaration: &NewCertificate,
    ) -> Result<Certificate, StoreError>;

    /// Remember (or forget, with `None`) the ACME order in flight.
    async fn set_order_url(&self, name: &str, url: Option<&str>) -> Result<(), StoreError>;

    /// Store a new version, make it current, mark the certificate valid, clear the order,
    /// its pending key and any Retry-After, all in one transaction; the previous version and
    /// its key stay readable.
    async fn add_version(&self, name: &str, version: NewVersion) -> Result<Version, StoreError>;

    /// Every version of a certificate, oldest first.
    async fn versions(&self, name: &str) -> Result<Vec<Version>, StoreError>;

    /// The private key of one version, unsealed.
    async fn version_key(&self, name: &str, seq: u32) -> Result<Secret, StoreError>;

    /// The account of `issuer` at `directory_url`, if one was registered.
    async fn account(
        &self,
        issuer: &str,
        directory_url: &str,
    ) -> Result<Option<AccountRecord>, StoreError>;

    /// Save an account (sealing its credentials); replaces an earlier one for the same pair.
    async fn save_account(&self, account: &AccountRecord) -> Result<(), StoreError>;

    /// Publish an HTTP-01 response.
    async fn put_challenge(&self, challenge: &Http01Challenge) -> Result<(), StoreError>;

    /// The key authorization for `token` if it is live at `now` for `host`.
    async fn challenge_response(
        &self,
        token: &str,
        host: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError>;

    /// Withdraw published responses.
    async fn remove_challenges(&self, tokens: &[String]) -> Result<(), StoreError>;

    /// Drop responses that expired before `now`; returns how many.
    async fn purge_challenges(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// Append to the event log.
    async fn append_event(
        &self,
        certificate: Option<&str>,
        kind: EventKind,
        message: &str,
    ) -> Result<(), StoreError>;

    /// The newest `limit` events, newest first, optionally for one certificate.
    async fn events(&self, certificate: Option<&str>, limit: u32)
    -> Result<Vec<Event>, StoreError>;

    /// Append an event with its structured details; returns it as stored (id, time). The
    /// [`EventListener`] set with [`Store::set_event_listener`] is told about it, as it is
    /// about events appended with [`Store::append_event`].
    async fn record_event(&self, event: &NewEvent) -> Result<Event, StoreError>;

    /// Events matching `query` (certificate, kinds, since), newest first, at most
    /// `query.limit`.
    async fn query_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;

    /// Tell `listener` about every event recorded from now on, after it is stored (one
    /// listener; a later call replaces it). Events recorded by other processes sharing the
    /// store are not seen.
    fn set_event_listener(&self, listener: Arc<dyn EventListener>);

    /// The current version of every certificate that has one, with the expiry thresholds
    /// already recorded for it (see [`crate::expiry`]).
    async fn expiry_watch(&self) -> Result<Vec<ExpiryWatch>, StoreError>;

    /// Record that version `seq` of `name` crossed `threshold`; `true` the first time, `false`
    /// if it was recorded before (by this or another replica), so each threshold is reported
    /// once per version. [`StoreError::NotFound`] without such a version.
    async fn record_expiry_threshold(
        &self,
        name: &str,
        seq: u32,
        threshold: &str,
    ) -> Result<bool, StoreError>;

    /// Switch who renews `name`: its source (`manual` → `acme` for `cert manage`) and its
    /// issuer, in one write; the versions are kept. An ACME certificate without a due time
    /// becomes due now (the scheduler then plans its renewal); a manual one has none.
    /// [`StoreError::NotFound`] if there is none.
    async fn set_source(&self, name: &str, source: Source, issuer: &str) -> Result<(), StoreError>;
    /// Replace a certificate's labels; [`StoreError::NotFound`] if there is no such certificate.
    async fn set_labels(&self, name: &str, labels: &Labels) -> Result<(), StoreError>;

    /// Store a new API token (only its hash); [`StoreError::AlreadyExists`] if the name is
    /// taken, even by a revoked token.
    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError>;

    /// The live (not revoked) token whose SHA-256 hash (lowercase hex) is `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token, revoked ones included, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revoke the live token called `name`; false if there is none.
    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError>;

    /// Record that the token called `name` was used (and what its agent reported about itself).
    async fn touch_token(&self, name: &str, seen: AgentSeen) -> Result<(), StoreError>;

    /// Keep `report` as the latest word of `agent` on its certificate and return the record it
    /// replaced; [`StoreError::NotFound`] if the certificate does not exist.
    async fn record_deployment(
        &self,
        agent: &str,
        report: &DeploymentReport,
    ) -> Result<Option<DeploymentRecord>, StoreError>;

    /// The latest reports, by certificate then agent, optionally for one certificate.
    async fn deployments(
        &self,
        certificate: Option<&str>,
    ) -> Result<Vec<DeploymentRecord>, StoreError>;

    /// Every HTTP-01 response live at `now` (what agents serve).
    async fn live_challenges(&self, now: UnixTime) -> Result<Vec<Http01Challenge>, StoreError>;

    /// `agent` confirms that it serves the response for `token`; false if the token is not
    /// published (any more).
    async fn confirm_challenge(&self, token: &str, agent: &str) -> Result<bool, StoreError>;

    /// The agents that confirmed `token`, by name.
    async fn challenge_confirmations(&self, token: &str) -> Result<Vec<String>, StoreError>;

    /// A counter that grows whenever what agents see may have changed: a version stored, a
    /// certificate's labels or current version changed or the certificate removed, a token
    /// created or revoked, an HTTP-01 response published or withdrawn. Agents watch it.
    async fn revision(&self) -> Result<u64, StoreError>;

    /// Call `notify` with the new [revision](Store::revision) whenever a write made through
    /// this store in this process moved it, so watchers wake without polling. The default does
    /// nothing (watchers then poll [`Store::revision`]).
    fn on_change(&self, notify: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = notify;
    }

    /// Record responses about to be published (before the solver publishes them), keyed by
    /// (solver, token); recording one again replaces it.
    async fn record_presented(&self, presented: &[PresentedChallenge]) -> Result<(), StoreError>;

    /// Every recorded response not yet withdrawn, oldest first.
    async fn presented_challenges(&self) -> Result<Vec<PresentedChallenge>, StoreError>;

    /// Forget recorded responses of `solver` once they are withdrawn.
    async fn forget_presented(&self, solver: &str, tokens: &[String]) -> Result<(), StoreError>;

    // --- Renewal: claims, schedule, orders in flight (issue 6) ---------------------------
    //
    // A certificate is worked on by one owner at a time. A claim names the owner and lasts
    // until `until`; while claimed, `next_due` is `until`, so a claim whose owner died makes
    // the certificate due again when it expires. Several replicas of a shared store (the
    // PostgreSQL store) call exactly these methods.

    /// Claim up to `limit` auto-renewable (`source = acme`) certificates whose `next_due` is
    /// at or before `now` and that no one else holds, earliest due first, for `owner` until
    /// `until` (their `next_due` becomes `until`). Returns them as claimed.
    async fn claim_due(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Certificate>, StoreError>;

    /// Claim one certificate whatever its `next_due` (a person asked to renew it); `None`
    /// when another owner holds a claim that lasts past `now`. [`StoreError::NotFound`] for
    /// an unknown name.
    async fn claim(
        &self,
        name: &str,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<Option<Certificate>, StoreError>;

    /// Extend `owner`'s claim to `until`; false when `owner` no longer holds it.
    async fn extend_claim(
        &self,
        name: &str,
        owner: &str,
        until: UnixTime,
    ) -> Result<bool, StoreError>;

    /// End `owner`'s claim and set when the certificate is due next (`None`: never, until
    /// something changes). False (and nothing changed) when `owner` does not hold the claim.
    async fn release_claim(
        &self,
        name: &str,
        owner: &str,
        next_due: Option<UnixTime>,
    ) -> Result<bool, StoreError>;

    /// Drop every claim, making the claimed certificates due at `now`. Only for a store used
    /// by one process (the embedded SQLite store, whose data directory is locked): at
    /// start-up the claims of a previous run are known to be dead. Returns how many.
    async fn release_all_claims(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// The earliest `next_due` of any auto-renewable certificate (claimed ones count with
    /// their claim's end); what the scheduler sleeps until.
    async fn next_due(&self) -> Result<Option<UnixTime>, StoreError>;

    /// Remember (or forget) the CA's Retry-After for a certificate: no request before `at`.
    async fn set_retry_after(&self, name: &str, at: Option<UnixTime>) -> Result<(), StoreError>;

    /// Keep the private key of the order in flight (sealed), before finalize sends its CSR,
    /// so that a restart can download the certificate of a finalized order instead of
    /// ordering again; `None` forgets it. [`Store::add_version`] forgets it too.
    async fn set_pending_key(&self, name: &str, key: Option<&Secret>) -> Result<(), StoreError>;

    /// The key kept by [`Store::set_pending_key`], unsealed.
    async fn pending_key(&self, name: &str) -> Result<Option<Secret>, StoreError>;

    /// One version of a certificate, `None` if there is no such version.
    async fn version(&self, name: &str, seq: u32) -> Result<Option<Version>, StoreError>;

    /// Record the CA's ARI window for version `seq` (`None`: none usable) and when to ask
    /// again.
    async fn set_ari(
        &self,
        name: &str,
        seq: u32,
        window: Option<AriWindow>,
        fetch_at: Option<UnixTime>,
    ) -> Result<(), StoreError>;

    // --- Revocation and the account's life (issue 7) -----------------------------------

    /// Mark version `seq` of `name` revoked at `at` for `reason` (RFC 8555 §7.6). `true` when
    /// it was marked now, `false` when it already was (the first time and reason are kept).
    /// [`StoreError::NotFound`] without such a version.
    async fn mark_revoked(
        &self,
        name: &str,
        seq: u32,
        at: UnixTime,
        reason: RevocationReason,
    ) -> Result<bool, StoreError>;

    /// The contacts `certfleet account update` set for the account of `issuer` at
    /// `directory_url`, overriding the configured ones; `None` when the configuration rules.
    async fn contacts_override(
        &self,
        issuer: &str,
        directory_url: &str,
    ) -> Result<Option<ContactsOverride>, StoreError>;

    /// Set (or clear, with `None`) the contacts override of a stored account;
    /// [`StoreError::NotFound`] when no account of `issuer` at `directory_url` is stored.
    async fn set_contacts_override(
        &self,
        issuer: &str,
        directory_url: &str,
        contacts: Option<&ContactsOverride>,
    ) -> Result<(), StoreError>;
}

/// Contacts a person set on an ACME account with `certfleet account update` (RFC 8555
/// §7.3.2). They stay in force over the configured contacts for as long as the configuration
/// still says what it said when they were set (`configured`); once someone edits the
/// configured contacts, the configuration rules again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactsOverride {
    /// The contacts the account should have (`mailto:` URLs; may be empty).
    pub contacts: Vec<String>,
    /// The configured contacts at the time they were set.
    pub configured: Vec<String>,
    /// When they were set.
    pub set_at: UnixTime,
}
