//! certfleet's domain model, without I/O.
//!
//! The nouns of the design ([`Certificate`], [`Version`], [`Account`](model::AccountRecord),
//! [`Event`]) live in [`model`]; input checks for names and tokens in [`name`] and
//! [`challenge`]; the storage contract every backend implements in [`store`].
//! Other crates do the I/O: `certfleet-store` (SQLite), `certfleet-acme` (the CA),
//! `certfleet-solvers` (challenges), `certfleet-server` (API and workers).
#![warn(missing_docs)]

pub mod challenge;
pub mod event;
pub mod expiry;
pub mod fleet;
pub mod labels;
pub mod model;
pub mod name;
pub mod policy;
pub mod revocation;
pub mod rules;
pub mod secret;
pub mod solver;
pub mod store;
pub mod text;
pub mod time;

pub use challenge::{ChallengeKind, Http01Challenge, TokenError, validate_token};
pub use event::{EventDetails, EventListener, EventQuery, NewEvent, Severity};
pub use expiry::ExpiryWatch;
pub use fleet::{AgentSeen, DeploymentRecord, DeploymentReport, NewToken, Role, TokenRecord};
pub use labels::{LabelError, Labels, Selector};
pub use model::{
    AccountRecord, CertName, Certificate, CertificateStatus, Event, EventKind, IssuedFor, KeyKind,
    MANUAL_ISSUER, NewCertificate, NewVersion, Source, Version, serial_hex,
};
pub use name::{DnsName, NameError};
pub use revocation::RevocationReason;
pub use rules::{PresentedChallenge, SolverRules, SolverSet};
pub use secret::Secret;
pub use solver::{PendingChallenge, Solver, SolverError};
pub use store::{ContactsOverride, Store, StoreError};
