//! An OTLP/HTTP receiver.
