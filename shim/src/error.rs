//! Typed errors, mapped to ttrpc status codes in one place ([`Error::into_ttrpc`]), the way
//! containerd's errdefs are mapped to gRPC codes.

use containerd_shim_protos::ttrpc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container or process does not exist (or has already finished).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation is not allowed in the task's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The runtime binary (runc, crun) failed; the message carries its own words.
    #[error("{0}")]
    Runtime(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    fn code(&self) -> ttrpc::Code {
        match self {
            Error::NotFound(_) => ttrpc::Code::NOT_FOUND,
            Error::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            Error::Runtime(_) | Error::Io { .. } | Error::Internal(_) => ttrpc::Code::UNKNOWN,
        }
    }

    pub fn into_ttrpc(self) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), self.to_string()))
    }
}

/// Turns a runtime (runc crate) error into ours, keeping what runc said. runc's own
/// "container does not exist" becomes NotFound, as containerd expects.
pub fn runtime_error(what: &str, err: runc::error::Error) -> Error {
    let text = match &err {
        runc::error::Error::CommandFailed {
            status,
            stdout,
            stderr,
        } => {
            let said = [stderr.trim(), stdout.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            format!("{what}: runtime exited with {status}: {said}")
        }
        runc::error::Error::ProcessSpawnFailed(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!(
                "{what}: the OCI runtime binary was not found ({e}); install runc or set the runtime's BinaryName option"
            )
        }
        other => format!("{what}: {other}"),
    };
    if is_not_exist(&text) {
        Error::NotFound(text)
    } else {
        Error::Runtime(text)
    }
}

/// Whether the runtime's message says the container is gone (runc: "does not exist",
/// crun: "No such file or directory" on its state).
pub fn is_not_exist(message: &str) -> bool {
    message.contains("does not exist") || message.contains("container not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(err: Error) -> (ttrpc::Code, String) {
        match err.into_ttrpc() {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn codes_follow_the_kind() {
        assert_eq!(
            status(Error::NotFound("x".into())).0,
            ttrpc::Code::NOT_FOUND
        );
        assert_eq!(
            status(Error::FailedPrecondition("x".into())).0,
            ttrpc::Code::FAILED_PRECONDITION
        );
        assert_eq!(
            status(Error::AlreadyExists("x".into())).0,
            ttrpc::Code::ALREADY_EXISTS
        );
        let (code, msg) = status(Error::Runtime("runc: boom".into()));
        assert_eq!((code, msg.as_str()), (ttrpc::Code::UNKNOWN, "runc: boom"));
    }

    #[test]
    fn runc_not_exist_is_not_found() {
        assert!(is_not_exist("container \"c1\" does not exist"));
        assert!(!is_not_exist("permission denied"));
        let err = runtime_error(
            "delete",
            runc::error::Error::ProcessSpawnFailed(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )),
        );
        assert!(
            err.to_string().contains("OCI runtime binary was not found"),
            "{err}"
        );
    }
}
