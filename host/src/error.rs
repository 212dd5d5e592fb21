//! The host crate's one error type.
//!
//! Every message names what the user can act on: the file, the byte offset or frame, or the
//! parameter, and what was expected. The CLI prints the message and exits with code 2.

use std::path::PathBuf;

/// Errors of the ptyflow host crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose contents do not match its format.
    #[error("{}: at byte {offset}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem in the file.
        offset: u64,
        /// What was found and what was expected.
        msg: String,
    },
    /// A file that cannot be read as a dump at all (wrong size, unknown kind, empty).
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was found and what was expected.
        msg: String,
    },
    /// A bad parameter value (command-line flag, configuration field).
    #[error("parameter `{name}`: {msg}")]
    Param {
        /// The parameter's name as the user writes it (e.g. `--bin`).
        name: String,
        /// What was given and what was expected.
        msg: String,
    },
    /// A frame kernel of the no_std core refused its configuration.
    #[error("{context}: {source}")]
    Core {
        /// What was being set up.
        context: String,
        /// The core's error.
        source: ptyflow_core::Error,
    },
    /// A size that follows from the configuration does not fit: its arithmetic overflows, an
    /// allocation failed, or the job needs more than the memory budget
    /// ([`crate::budget`]). Refused at set-up, before the first frame.
    #[error("parameter `{name}`: {msg}")]
    Memory {
        /// The parameter to change, as the user writes it (e.g. `--step`); the C API renames
        /// it to its own field name.
        name: String,
        /// What would be allocated, how much it needs and the limit it exceeds.
        msg: String,
        /// Bytes the job (or the one buffer) would need; `None` when that overflows 64 bits.
        needed: Option<u64>,
        /// The memory budget in bytes, when the budget was the limit (`None`: the allocator
        /// refused).
        budget: Option<u64>,
    },
    /// A dump that shrank while it was read: names the file and the first frame that could
    /// not be read (see "Files that change while mapped" in [`crate::source`]).
    #[error("{0}")]
    Changed(crate::source::SourceChanged),
    /// The run was interrupted (Ctrl-C, or the consumer went away).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// An [`Error::Format`] for `path` at byte `offset`.
    pub fn format(path: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            offset,
            msg: msg.into(),
        }
    }
    /// An [`Error::File`] for `path`.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.into(),
        }
    }
    /// An [`Error::Param`] for the parameter `name`.
    pub fn param(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            msg: msg.into(),
        }
    }
    /// An [`Error::Memory`] for the parameter `name`.
    pub fn memory(
        name: impl Into<String>,
        msg: impl Into<String>,
        needed: Option<u64>,
        budget: Option<u64>,
    ) -> Self {
        Error::Memory {
            name: name.into(),
            msg: msg.into(),
            needed,
            budget,
        }
    }
    /// An [`Error::Core`] raised while setting up `context`.
    pub fn core(context: impl Into<String>, source: ptyflow_core::Error) -> Self {
        Error::Core {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with the host's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
