//! certfleet's ACME issuer (RFC 8555), built on instant-acme.
//!
//! - [`http`]: the HTTPS client for the CA (system roots plus extra roots, request timeout).
//! - [`keys`]: a fresh private key per version and its CSR.
//! - [`inspect`]: reading PEM chains and checking that what the CA sent is what we asked for.
//! - [`import`]: checking and ordering certificate material a person imports.
//! - [`issuer`]: [`AcmeIssuer`], which owns one account per issuer ([`account`]) and runs
//!   orders ([`order`]); [`cleanup`] withdraws the responses of a cancelled order.
//! - [`directory`]: the CA's directory (ARI, profiles); [`jws`]: certfleet's own signed
//!   requests (account object, order polls, chain downloads with alternates).
//! - [`ca`]: the [`Acme`] trait the renewal engine talks to (a fake CA in simulations);
//!   [`ari`]: renewal information (RFC 9773).
//! - The account's life: [`contacts`] (`account update`, RFC 8555 §7.3.2, and which contacts
//!   rule), [`rollover`] (a new account key, §7.3.5), [`revoke`] (revoking a certificate
//!   with the account, §7.6).
//! - [`error`]: [`AcmeError`], keeping the CA's problem document typed.
#![warn(missing_docs)]

pub mod account;
pub mod ari;
pub mod ca;
pub mod cleanup;
pub mod contacts;
pub mod directory;
pub mod error;
pub mod http;
pub mod import;
pub mod inspect;
pub mod issuer;
pub mod jws;
pub mod keys;
pub mod order;
pub mod revoke;
pub mod rollover;

pub use ca::{Acme, OrderFailure, OrderObserver, OrderRequest, RenewalInfo, Resume};
pub use error::AcmeError;
pub use inspect::{CertInfo, ParsedChain};
pub use issuer::{AcmeIssuer, Issued, IssuerConfig};
