//! End-to-end tests of the `certfleet` binary against real Pebble.

mod alpn_redis;
mod bad_input;
mod dns01;
mod harness;
mod issuance;
mod issuers;
mod lifecycle;
