//! Challenge solvers and the responders that answer the CA.
//!
//! - [`http01::Http01Solver`] publishes HTTP-01 responses into the shared [`Store`], the
//!   in-memory [`live::LiveTokens`] of this node's responder, and optionally the Redis mirror
//!   ([`mirror`]), so any node can answer the CA (DESIGN.md §4).
//! - [`responder::router`] is the `/.well-known/acme-challenge/<token>` handler: it validates
//!   the token, answers only live tokens for the right Host from memory, and gives one constant
//!   404 for everything else; no request ever reaches a database.
//! - [`dns`]: DNS-01 behind the [`dns::DnsProvider`] trait (rfc2136, acme-dns, exec,
//!   cloudflare, route53) with the propagation check.
//! - [`tls_alpn`]: TLS-ALPN-01 (RFC 8737) with its own rustls listener.
//! - [`webroot::WebrootSolver`]: HTTP-01 through a running web server's document root.
//! - [`recorded::Recorded`] records every presentation in the store before it happens, so a
//!   restarted server can withdraw it ([`recorded::finish_cleanup`]).
//!
//! [`Store`]: certfleet_core::Store
#![warn(missing_docs)]

pub mod api_client;
pub mod dns;
pub mod error;
pub mod http01;
pub mod live;
pub mod mirror;
pub mod recorded;
pub mod responder;
pub mod self_check;
pub mod tls_alpn;
pub mod webroot;

pub use error::Error;
pub use http01::Http01Solver;
pub use live::LiveTokens;
