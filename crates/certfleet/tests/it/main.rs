//! End-to-end tests of the `certfleet` binary against real Pebble.

mod account_life;
mod accounts;
mod agents;
mod alpn_redis;
mod bad_input;
mod certbot;
mod chains;
mod check;
mod dns01;
mod entitlement;
mod export;
mod faults;
mod field_reports;
mod fleet_harness;
mod fleet_http01;
mod harness;
mod heavy;
mod imports;
mod issuance;
mod issuers;
mod lifecycle;
mod notifications;
mod renewal;
mod revocation;
mod standalone;
mod tls_api;
