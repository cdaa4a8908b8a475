//! The one error type of the core, with a kind per failure a caller can act on.

use std::fmt;

/// Defines [`ErrorKind`] with its stable names and the list of them all,
/// from one table, so that no kind can lack a name or miss the list.
macro_rules! error_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What went wrong, as a caller can match on it. Each kind has a stable
        /// snake_case name (see [`ErrorKind::as_str`]) that the Elixir side turns
        /// into the `reason` atom of `%LiteStash.Error{}`.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];

            /// The stable name of this kind, used as the Elixir `reason` atom.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// The key is not stored.
    NotFound => "not_found",
    /// The key is empty, longer than 1024 bytes, or not UTF-8.
    InvalidKey => "invalid_key",
    /// The value holds something the contract cannot store.
    UnsupportedValue => "unsupported_value",
    /// The encoded value is larger than 64 MiB.
    ValueTooLarge => "value_too_large",
    /// The value is nested deeper than 512 levels.
    TooDeep => "too_deep",
    /// A stored value is not valid contract MessagePack.
    CorruptValue => "corrupt_value",
    /// The store has been closed.
    Closed => "closed",
    /// The data dir is already open in this process.
    AlreadyOpen => "already_open",
    /// The disk (or the shard's page limit) is full.
    DiskFull => "disk_full",
    /// A shard file is damaged or not a database.
    Corrupt => "corrupt",
    /// Another connection holds the lock longer than the busy timeout.
    Busy => "busy",
    /// The operating system reported an I/O error.
    Io => "io",
    /// The file system refused access.
    PermissionDenied => "permission_denied",
    /// The file or its directory is read-only, or the store was opened
    /// read-only.
    ReadOnly => "read_only",
    /// A path that must be a directory is something else, or the reverse.
    NotADirectory => "not_a_directory",
    /// The file is an SQLite database, but not a LiteStash shard; or the
    /// dir is not empty and holds no shard.
    NotLitestash => "not_litestash",
    /// The file was written under a newer contract version.
    NewerVersion => "newer_version",
    /// The data dir was written by the Python litestash 0.1 package.
    LegacyFormat => "legacy_format",
    /// The dir is a backup that was interrupted before it was complete.
    IncompleteBackup => "incomplete_backup",
    /// A bad option value.
    InvalidArgument => "invalid_argument",
    /// The stored value is not an integer (for `incr`).
    NotAnInteger => "not_an_integer",
    /// The key already exists (for conditional writes).
    Exists => "exists",
    /// The stored value is not the expected one (for compare-and-set).
    Mismatch => "mismatch",
    /// As many snapshots (streams) are open as the store's
    /// [`crate::Options::max_snapshots`] allows.
    TooManyStreams => "too_many_streams",
    /// The shard file is a replica's: written only through its cluster's
    /// log (contract section 10).
    Replicated => "replicated",
    /// Too few of a clustered shard's members answered within the timeout.
    /// Given by the cluster layer (LiteStash.Cluster), never by the core.
    NoQuorum => "no_quorum",
    /// A clustered shard's file has applied entries, but its Ra server and
    /// log are gone from this member's data dir. Given by the cluster layer
    /// (LiteStash.Cluster), never by the core.
    ReplicaLogLost => "replica_log_lost",
    /// A bug in LiteStash: a panic was caught or an invariant broke.
    Internal => "internal",
}

/// An error with its kind and a message a person understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error of a key that is not stored, naming it.
    pub fn not_found(key: &str) -> Error {
        Error::new(ErrorKind::NotFound, format!("key {key:?} not found"))
    }

    pub(crate) fn closed() -> Error {
        Error::new(ErrorKind::Closed, "the store is closed")
    }

    /// Maps an SQLite failure to a kind by SQLite's primary result code and
    /// keeps the code in the message. `context` names the file or operation.
    pub(crate) fn sqlite(err: rusqlite::Error, context: &str) -> Error {
        use rusqlite::ffi::ErrorCode as C;
        match &err {
            rusqlite::Error::SqliteFailure(e, msg) => {
                let kind = match e.code {
                    C::DiskFull => ErrorKind::DiskFull,
                    C::DatabaseCorrupt | C::NotADatabase => ErrorKind::Corrupt,
                    C::DatabaseBusy | C::DatabaseLocked => ErrorKind::Busy,
                    C::SystemIoFailure => ErrorKind::Io,
                    C::PermissionDenied | C::AuthorizationForStatementDenied => {
                        ErrorKind::PermissionDenied
                    }
                    C::ReadOnly => ErrorKind::ReadOnly,
                    C::CannotOpen => ErrorKind::Io,
                    C::TooBig => ErrorKind::ValueTooLarge,
                    _ => ErrorKind::Internal,
                };
                let detail = msg.clone().unwrap_or_else(|| e.to_string());
                Error::new(
                    kind,
                    format!("{context}: {detail} (SQLite code {})", e.extended_code),
                )
            }
            other => Error::new(ErrorKind::Internal, format!("{context}: {other}")),
        }
    }

    /// Maps an OS error about `path` to a kind.
    pub(crate) fn io(err: &std::io::Error, what: &str) -> Error {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::NotADirectory | K::AlreadyExists | K::IsADirectory => ErrorKind::NotADirectory,
            K::ReadOnlyFilesystem => ErrorKind::ReadOnly,
            K::StorageFull => ErrorKind::DiskFull,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.as_str())
    }
}

impl std::error::Error for Error {}
