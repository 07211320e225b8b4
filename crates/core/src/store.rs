//! The storage contract ([`Store`]) that every backend implements.
//!
//! Callers hold an `Arc<dyn Store>`; SQLite is the embedded default and a PostgreSQL
//! implementation for several replicas slots in behind the same trait. Private keys cross
//! this boundary in plaintext ([`Secret`]) and are sealed by the backend, which binds each
//! ciphertext to its row so that ciphertexts cannot be swapped between rows.

use async_trait::async_trait;

use crate::challenge::Http01Challenge;
use crate::model::{
    AccountRecord, Certificate, CertificateStatus, Event, EventKind, NewCertificate, NewVersion,
    Version,
};
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

    /// Remember (or forget, with `None`) the ACME order in flight.
    async fn set_order_url(&self, name: &str, url: Option<&str>) -> Result<(), StoreError>;

    /// Store a new version, make it current, mark the certificate valid, clear the order.
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

    /// Every HTTP-01 response live at `now` (what a responder keeps in memory, so that
    /// requests for unknown tokens never reach the store).
    async fn live_challenges(&self, now: UnixTime) -> Result<Vec<Http01Challenge>, StoreError>;

    /// Record responses about to be published (before the solver publishes them), keyed by
    /// (solver, token); recording one again replaces it.
    async fn record_presented(&self, presented: &[PresentedChallenge]) -> Result<(), StoreError>;

    /// Every recorded response not yet withdrawn, oldest first.
    async fn presented_challenges(&self) -> Result<Vec<PresentedChallenge>, StoreError>;

    /// Forget recorded responses of `solver` once they are withdrawn.
    async fn forget_presented(&self, solver: &str, tokens: &[String]) -> Result<(), StoreError>;
}
