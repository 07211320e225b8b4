//! Test kit: starts real services on free loopback ports for certfleet's tests.
//!
//! [`Pebble::start`] runs the [Pebble](https://github.com/letsencrypt/pebble) ACME test CA
//! (`/usr/bin/pebble`, Debian package `pebble`) together with `pebble-challtestsrv` as its DNS
//! resolver, in a private temporary directory, bound to `127.0.0.1` only. The TLS certificate of
//! Pebble's own HTTPS listener is signed by a throw-away CA generated with `rcgen`; an ACME client
//! under test must trust [`Pebble::ca_cert_path`] / [`Pebble::ca_cert_pem`]. Both processes are
//! killed (by their own PID) and reaped when the [`Pebble`] value is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use certfleet_testkit::{Pebble, PebbleOptions};
//! let pebble = Pebble::start(PebbleOptions::fast()).await;
//! let url = pebble.directory_url(); // https://127.0.0.1:PORT/dir
//! // Every name resolves to 127.0.0.1: answer HTTP-01 on 127.0.0.1:pebble.http01_port().
//! # let _ = url;
//! # }
//! ```
#![warn(missing_docs)]

pub mod pebble;
pub mod ports;
pub mod process;
pub mod proxy;

pub use pebble::{Pebble, PebbleOptions, PebbleRelease};
pub use ports::{free_port, free_ports};
pub use process::{Guard, child_command, require_program};
pub use proxy::FaultProxy;

/// Where `scripts/testbed` keeps what it unpacks or installs outside the system (newer Pebble
/// releases, the SMTP sink's virtualenv): `$CERTFLEET_TESTBED_CACHE`, else
/// `~/.cache/certfleet-testbed`.
pub fn testbed_cache() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CERTFLEET_TESTBED_CACHE") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::path::Path::new(&home).join(".cache/certfleet-testbed")
}
