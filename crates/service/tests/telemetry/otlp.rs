//! The OTLP the server exports, as an in-process OTLP/HTTP receiver decodes it.
