//! The one error type that crosses every boundary: service logic returns it,
//! gRPC carries it as a `tonic::Status`, the gateway renders it as
//! `status_code`/`status_msg`. Messages of the caller-facing kinds say what was
//! wrong; internal details stay in the logs.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is missing or malformed; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The token is missing, malformed, expired or wrongly signed.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this to that object.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    RateLimited(String),
    /// A peer or backend did not answer in time; the detail is for logs.
    #[error("service temporarily unavailable: {0}")]
    Unavailable(String),
    /// The database refused the transaction for contention (deadlock, lock
    /// wait timeout, SQLite busy): running it again may succeed. Reported as
    /// `Unavailable` once retries are spent; the detail is for logs.
    #[error("service temporarily unavailable: database busy: {0}")]
    Busy(String),
    /// A bug or a broken backend; the detail is for logs.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// The app contract's `status_code` for this error (0 is success).
    pub fn status_code(&self) -> i32 {
        match self {
            Self::InvalidArgument(_) => 400,
            Self::Unauthenticated(_) => 401,
            Self::PermissionDenied(_) => 403,
            Self::NotFound(_) => 404,
            Self::AlreadyExists(_) => 409,
            Self::TooLarge(_) => 413,
            Self::RateLimited(_) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) | Self::Busy(_) => 503,
        }
    }

    /// Every value of [`Error::kind`].
    pub const KINDS: [&'static str; 9] = [
        "invalid_argument",
        "unauthenticated",
        "permission_denied",
        "not_found",
        "already_exists",
        "too_large",
        "rate_limited",
        "unavailable",
        "internal",
    ];

    /// The kind as a metric label (`invalid_argument`, `too_large` …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission_denied",
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::TooLarge(_) => "too_large",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) | Self::Busy(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The message a client may see: never a detail of the internal kinds.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) | Self::Busy(_) => "service temporarily unavailable".into(),
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::TooLarge(_) => Code::OutOfRange,
            Self::RateLimited(_) => Code::ResourceExhausted,
            Self::Unavailable(_) | Self::Busy(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match &error {
            Error::Internal(detail) | Error::Unavailable(detail) | Error::Busy(detail) => {
                tracing::error!(error = %detail, kind = ?error.code(), "request failed");
            }
            _ => {}
        }
        Status::new(error.code(), error.public_message())
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let msg = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Self::InvalidArgument(msg),
            Code::Unauthenticated => Self::Unauthenticated(msg),
            Code::PermissionDenied => Self::PermissionDenied(msg),
            Code::NotFound => Self::NotFound(msg),
            Code::AlreadyExists => Self::AlreadyExists(msg),
            Code::OutOfRange => Self::TooLarge(msg),
            Code::ResourceExhausted => Self::RateLimited(msg),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Self::Unavailable(format!("{:?}: {msg}", status.code()))
            }
            _ => Self::Internal(format!("{:?}: {msg}", status.code())),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let busy = matches!(code.as_str(), "40001" | "5" | "6" | "517" | "261" | "262");
            let msg = db.message();
            if busy || msg.contains("Deadlock") || msg.contains("Lock wait timeout") {
                return Self::Busy(format!("code {code}"));
            }
            // The server's message may quote stored values (a duplicate key names
            // the value); logs keep only its kind, code and constraint.
            return Self::Internal(format!(
                "database error {:?}, code {code}, constraint {:?}",
                db.kind(),
                db.constraint().unwrap_or_default()
            ));
        }
        if matches!(error, sqlx::Error::PoolTimedOut) {
            crate::metrics::pool_timeout();
        }
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable(format!("database: {error}"))
            }
            other => Self::Internal(format!("database: {other}")),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        Self::Unavailable(format!("redis: {error}"))
    }
}

impl Error {
    /// The gRPC status of this error (for `map_err`).
    pub fn into_status(self) -> Status {
        self.into()
    }
}

/// True when a database error is a unique-key violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed() {
        let all = [
            Error::invalid(""),
            Error::Unauthenticated(String::new()),
            Error::PermissionDenied(String::new()),
            Error::not_found(""),
            Error::AlreadyExists(String::new()),
            Error::TooLarge(String::new()),
            Error::RateLimited(String::new()),
            Error::Unavailable(String::new()),
            Error::internal(""),
        ];
        assert_eq!(all.map(|e| e.kind()), Error::KINDS);
    }

    #[test]
    fn business_errors_survive_a_grpc_hop() {
        for error in [
            Error::invalid("title is too long"),
            Error::not_found("video 7 does not exist"),
            Error::AlreadyExists("username is taken".into()),
            Error::PermissionDenied("only the author may delete a comment".into()),
        ] {
            let (code, msg) = (error.status_code(), error.public_message());
            let back = Error::from(Status::from(error));
            assert_eq!(back.status_code(), code);
            assert_eq!(back.public_message(), msg);
        }
    }

    #[test]
    fn database_errors_do_not_carry_stored_values() {
        #[derive(Debug)]
        struct Duplicate;
        impl std::fmt::Display for Duplicate {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Duplicate entry 'alice-secret' for key 'users_username'")
            }
        }
        impl std::error::Error for Duplicate {}
        impl sqlx::error::DatabaseError for Duplicate {
            fn message(&self) -> &str {
                "Duplicate entry 'alice-secret' for key 'users_username'"
            }
            fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
                Some("23000".into())
            }
            fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
                self
            }
            fn kind(&self) -> sqlx::error::ErrorKind {
                sqlx::error::ErrorKind::UniqueViolation
            }
        }
        let error = Error::from(sqlx::Error::Database(Box::new(Duplicate)));
        assert!(!error.to_string().contains("alice-secret"), "{error}");
        assert!(error.to_string().contains("23000"), "{error}");
    }

    #[test]
    fn internal_details_do_not_reach_the_client() {
        let status = Status::from(Error::internal("SELECT * FROM users near line 3"));
        assert_eq!(status.message(), "internal error");
        let status = Status::from(Error::Unavailable("10.0.0.7:50051 refused".into()));
        assert_eq!(status.message(), "service temporarily unavailable");
        let back = Error::from(Status::deadline_exceeded("timeout"));
        assert_eq!(back.public_message(), "service temporarily unavailable");
    }
}
