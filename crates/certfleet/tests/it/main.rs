//! End-to-end tests of the `certfleet` binary against real Pebble.

mod agents;
mod alpn_redis;
mod bad_input;
mod certbot;
mod check;
mod dns01;
mod entitlement;
mod export;
mod field_reports;
mod fleet_harness;
mod fleet_http01;
mod harness;
mod imports;
mod issuance;
mod issuers;
mod lifecycle;
mod notifications;
mod tls_api;
