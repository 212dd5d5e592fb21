//! pipeline (placeholder).
