//! certfleet's stores and the sealing that protects private keys at rest.
//!
//! - [`Sealer`] (in [`seal`]) encrypts private keys and account credentials with AES-256-GCM
//!   under the key-encryption key, binding each ciphertext to its row (DESIGN.md §4, "Keys
//!   sealed at rest"). [`Sealer::from_env_or_file`] loads the key the way the server does.
//! - [`SqliteStore`] (in [`sqlite`]) implements [`certfleet_core::Store`] on one SQLite file:
//!   the embedded default that `certfleet server` uses without configuration.
//! - [`suite`] is the conformance battery every [`Store`](certfleet_core::Store) backend runs,
//!   so a PostgreSQL store proves the same behaviour as SQLite.
//!
//! ```no_run
//! use std::path::Path;
//! use certfleet_store::{Sealer, SqliteStore};
//!
//! let (sealer, created) = Sealer::load_or_create(Path::new("/var/lib/certfleet/kek"))?;
//! if created {
//!     println!("created a new key-encryption key; back it up with the database");
//! }
//! let store = SqliteStore::open(Path::new("/var/lib/certfleet/certfleet.db"), sealer)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod seal;
pub mod sqlite;
pub mod suite;

pub use seal::{SealError, Sealer};
pub use sqlite::SqliteStore;
