//! End-to-end tests of the `certfleet` binary against real Pebble.

mod agents;
mod bad_input;
mod export;
mod fleet_harness;
mod harness;
mod issuance;
mod issuers;
mod lifecycle;
