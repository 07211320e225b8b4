//! Challenge solvers and the HTTP-01 responder.
//!
//! - [`http01::Http01Solver`] publishes HTTP-01 responses into the shared [`Store`], so any
//!   node that runs the responder can answer the CA (DESIGN.md §4, "any node answers any
//!   challenge").
//! - [`responder::router`] is the `/.well-known/acme-challenge/<token>` handler: it answers
//!   only live tokens for the right Host and gives one constant 404 for everything else.
//!
//! A new solver (DNS-01 providers, TLS-ALPN-01) implements [`certfleet_core::Solver`] and is
//! selected per certificate by its [`certfleet_core::ChallengeKind`].
//!
//! [`Store`]: certfleet_core::Store
#![warn(missing_docs)]

pub mod http01;
pub mod responder;

pub use http01::Http01Solver;
