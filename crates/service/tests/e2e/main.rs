//! End-to-end tests, one binary: the real server (built in this process from the settings the
//! binary would read, or the binary itself as a child process) speaking HTTP against a fresh
//! PostgreSQL database per test; its telemetry as Cloud Logging and an OTLP receiver see it; and
//! the binary's `check-config` as an operator runs it; how often start-up reads its secret files.
//! `support` holds what they share.
#![allow(clippy::unwrap_used)]

mod api;
mod cli;
mod database;
mod schema;
mod secret_files;
mod support;
mod telemetry;
