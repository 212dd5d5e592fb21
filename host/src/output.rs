//! output (placeholder).
