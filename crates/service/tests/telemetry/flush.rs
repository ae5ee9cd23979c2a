//! SIGTERM flushes every span.
