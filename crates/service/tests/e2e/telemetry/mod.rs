//! Telemetry: the real server's log lines (Cloud Logging JSON, trace context, Error Reporting),
//! its OTLP traces and metrics as an OTLP receiver sees them, and the flush on SIGTERM.

mod flush;
mod logs;
mod otlp;
