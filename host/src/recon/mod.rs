//! Ptychographic reconstruction (placeholder).
