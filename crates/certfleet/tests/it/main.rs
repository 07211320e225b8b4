//! End-to-end tests of the `certfleet` binary against real Pebble.

mod accounts;
mod bad_input;
mod chains;
mod faults;
mod harness;
mod heavy;
mod issuance;
mod issuers;
mod lifecycle;
mod renewal;
