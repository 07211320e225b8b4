//! End-to-end tests of the `certfleet` binary against real Pebble.

mod bad_input;
mod export;
mod harness;
mod issuance;
mod issuers;
mod lifecycle;
