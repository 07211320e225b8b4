//! End-to-end tests of the `certfleet` binary against real Pebble.

mod bad_input;
mod certbot;
mod field_reports;
mod harness;
mod imports;
mod issuance;
mod issuers;
mod lifecycle;
mod notifications;
