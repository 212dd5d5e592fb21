//! optics (placeholder).
