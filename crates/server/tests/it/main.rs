//! Tests of the renewal engine in simulated time, against a fake CA.

mod fake_ca;
mod simulation;
