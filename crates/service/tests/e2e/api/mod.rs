//! The API: requests and problems, idempotency, the generated client, faults of the database,
//! graceful shutdown of the binary and the docs page in a browser.

mod bad_input;
mod client;
mod cors;
mod docs_browser;
mod faults;
mod idempotency;
mod items;
mod shutdown;
