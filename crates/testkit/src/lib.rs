//! Test kit: starts real services on free loopback ports for certfleet's tests.
//!
//! [`Nginx::start`] runs a private nginx (as `nobody`, in a temporary directory) serving TLS
//! from the files a deploy target writes; see [`nginx`].
//!
//! [`Pebble::start`] runs the [Pebble](https://github.com/letsencrypt/pebble) ACME test CA
//! (`/usr/bin/pebble`, Debian package `pebble`) together with `pebble-challtestsrv` as its DNS
//! resolver, in a private temporary directory, bound to `127.0.0.1` only. The TLS certificate of
//! Pebble's own HTTPS listener is signed by a throw-away CA generated with `rcgen`; an ACME client
//! under test must trust [`Pebble::ca_cert_path`] / [`Pebble::ca_cert_pem`]. Both processes are
//! killed (by their own PID) and reaped when the [`Pebble`] value is dropped.
//!
//! Besides Pebble: [`SmtpSink`] (aiosmtpd from the testbed's virtualenv, with STARTTLS or
//! implicit TLS and AUTH), [`WebhookReceiver`] (records requests, answers 2xx, a failure, or
//! never), [`certbot_certonly`] (the real certbot issuing a lineage from a test Pebble),
//! [`StaticSite`] (a plain static file server over a webroot) and [`TestPki`] (a root and
//! intermediate that sign leaves for import tests).
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

pub mod certbot;
pub mod knot;
pub mod nginx;
pub mod pebble;
pub mod pki;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod smtp;
pub mod static_site;
pub mod webhook;

pub use certbot::certbot_certonly;
pub use nginx::{Nginx, NginxOptions};
pub mod redis;

pub use knot::Knot;
pub use pebble::{Pebble, PebbleOptions, PebbleRelease};
pub use pki::{TestLeaf, TestPki, Validity};
pub use ports::{free_port, free_ports};
pub use process::{Guard, child_command, require_program};
pub use proxy::FaultProxy;
pub use redis::Redis;
pub use smtp::{SmtpSink, SmtpSinkOptions};
pub use static_site::StaticSite;
pub use webhook::{Answer, Received, WebhookReceiver};

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
