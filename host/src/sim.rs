//! sim (placeholder).
