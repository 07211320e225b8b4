//! Integration tests of certfleet-store: the conformance suite on SQLite, and what reaches
//! the disk (no plaintext keys, file modes, sealing bound to rows and to the key).

mod at_rest;
mod conformance;
mod sealing;

use std::path::{Path, PathBuf};

use certfleet_store::{Sealer, SqliteStore};

/// A sealer over a fixed key; different `byte`s give different keys.
fn sealer(byte: u8) -> Sealer {
    Sealer::from_key_bytes([byte; 32])
}

/// The database path inside `dir`.
fn db_path(dir: &Path) -> PathBuf {
    dir.join("certfleet.db")
}

/// Open the file store in `dir` with `sealer`.
fn open(dir: &Path, sealer: Sealer) -> SqliteStore {
    SqliteStore::open(&db_path(dir), sealer).expect("open the SQLite store")
}
