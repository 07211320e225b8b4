//! End-to-end tests of the `certfleet` binary against real Pebble.

mod agents;
mod bad_input;
mod check;
mod entitlement;
mod export;
mod fleet_harness;
mod fleet_http01;
mod harness;
mod issuance;
mod issuers;
mod lifecycle;
mod tls_api;
