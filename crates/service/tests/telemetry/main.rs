//! Telemetry end to end: the real server's log lines (Cloud Logging JSON, trace context, Error
//! Reporting), its OTLP traces and metrics as an OTLP receiver sees them, and the flush on SIGTERM.
#![allow(clippy::unwrap_used)]

mod flush;
mod helpers;
mod logs;
mod otlp;
mod receiver;
