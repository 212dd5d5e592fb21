//! Unit tests of the readers on synthetic files.
