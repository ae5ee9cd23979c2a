//! End-to-end tests: the real server on a random port, speaking HTTP, against a fresh PostgreSQL
//! database per test.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod client;
mod docs_browser;
mod faults;
mod helpers;
mod idempotency;
mod items;
mod shutdown;
