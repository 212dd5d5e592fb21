//! The host crate's one error type.
//!
//! Every message names what the user can act on: the file, the byte offset or frame, or the
//! parameter, and what was expected. Parameters are named by their configuration field
//! ([`crate::job::JobConfig`]: `scan.shape`, `recon.window`); a face that spells them
//! otherwise (the CLI's flags) renames them with [`Error::renamed`]. The CLI prints the
//! message and exits with [`Error::exit_code`].

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
    /// A live source failed: the connection to the detector could not be made, was lost, or
    /// carried something its protocol does not allow.
    #[error("{address}: {msg}")]
    Live {
        /// The detector's address as configured (`HOST:PORT`).
        address: String,
        /// What happened, with the frame and byte counts received.
        msg: String,
    },
    /// The run was interrupted on request (Ctrl-C, or the embedding program's flag). What was
    /// computed up to then is kept.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A pipeline stage died: a worker thread panicked (a bug in ptyflow) or a channel
    /// between the stages closed before the end of the run. Not an interrupt, not bad input.
    #[error("pipeline failure: {0}")]
    Pipeline(String),
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
    /// An [`Error::Live`] for the detector at `address`.
    pub fn live(address: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Live {
            address: address.into(),
            msg: msg.into(),
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

impl Error {
    /// The process exit code of the CLI for this error: 130 for an interrupt (as a shell
    /// reports SIGINT), 70 (`EX_SOFTWARE`) for a pipeline failure, 2 for everything else
    /// (bad input, files, budget).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted(_) => 130,
            Error::Pipeline(_) => 70,
            _ => 2,
        }
    }

    /// The same error with every parameter renamed by `rename` (a configuration field to the
    /// face's own name for it): the parameter an error is about, and every field written in
    /// backticks in its message. Names `rename` does not know stay as they are.
    pub fn renamed(self, rename: impl Fn(&str) -> Option<&'static str>) -> Error {
        let in_text = |msg: String| -> String {
            let mut out = String::with_capacity(msg.len());
            let mut parts = msg.split('`');
            if let Some(first) = parts.next() {
                out.push_str(first);
            }
            // Odd pieces were inside backticks.
            for (k, piece) in parts.enumerate() {
                match (k % 2, rename(piece)) {
                    (0, Some(flag)) => {
                        out.push('`');
                        out.push_str(flag);
                    }
                    _ => {
                        out.push('`');
                        out.push_str(piece);
                    }
                }
            }
            out
        };
        let name_of = |name: String| rename(&name).map_or(name, str::to_owned);
        match self {
            Error::Param { name, msg } => Error::Param {
                name: name_of(name),
                msg: in_text(msg),
            },
            Error::Memory {
                name,
                msg,
                needed,
                budget,
            } => Error::Memory {
                name: name_of(name),
                msg: in_text(msg),
                needed,
                budget,
            },
            Error::Core { context, source } => Error::Core {
                context: in_text(name_of(context)),
                source,
            },
            Error::File { path, msg } => Error::File {
                path,
                msg: in_text(msg),
            },
            other => other,
        }
    }
}

/// The message of a caught panic (`std::thread::Result`'s or `catch_unwind`'s payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// `Result` with the host's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_reaches_the_name_and_the_backticked_fields() {
        let rename = |f: &str| match f {
            "scan.shape" => Some("--scan"),
            "scan.allow_partial" => Some("--allow-partial"),
            _ => None,
        };
        let e = Error::param(
            "scan.shape",
            "10x10 = 100 positions, 90 frames; set `scan.allow_partial` to replay (`x`)",
        )
        .renamed(rename);
        assert_eq!(
            e.to_string(),
            "parameter `--scan`: 10x10 = 100 positions, 90 frames; set `--allow-partial` to replay (`x`)"
        );
        assert_eq!(Error::Interrupted("x".into()).exit_code(), 130);
        assert_eq!(Error::Pipeline("x".into()).exit_code(), 70);
        assert_eq!(Error::param("a", "b").exit_code(), 2);
    }
}
