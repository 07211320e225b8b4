//! certfleet's ACME issuer (RFC 8555), built on instant-acme.
//!
//! - [`http`]: the HTTPS client for the CA (system roots plus extra roots, request timeout).
//! - [`keys`]: a fresh private key per version and its CSR.
//! - [`inspect`]: reading PEM chains and checking that what the CA sent is what we asked for.
//! - [`import`]: checking and ordering certificate material a person imports.
//! - [`issuer`]: [`AcmeIssuer`], which owns one account per issuer and runs orders.
//! - [`error`]: [`AcmeError`], keeping the CA's problem document typed.
#![warn(missing_docs)]

pub mod cleanup;
pub mod error;
pub mod http;
pub mod import;
pub mod inspect;
pub mod issuer;
pub mod keys;

pub use error::AcmeError;
pub use inspect::{CertInfo, ParsedChain};
pub use issuer::{AcmeIssuer, Issued, IssuerConfig, OrderObserver};
