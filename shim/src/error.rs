//! Typed errors, mapped to ttrpc status codes in one place ([`Error::into_ttrpc`]), the way
//! containerd's errdefs are mapped to gRPC codes.

use std::path::Path;

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
    /// A restore would bring back more privilege than the container's spec grants.
    #[error("{0}")]
    PermissionDenied(String),
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
    /// A checkpoint or a restore failed (see [`crate::checkpoint`]).
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::Error),
    /// A state change the process's table does not allow (see [`crate::process`]).
    #[error("invalid state transition {from:?} to {to:?}")]
    InvalidTransition {
        from: &'static str,
        to: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The status code containerd's client sees.
    pub fn code(&self) -> ttrpc::Code {
        match self {
            Error::NotFound(_) => ttrpc::Code::NOT_FOUND,
            Error::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            Error::PermissionDenied(_) => ttrpc::Code::PERMISSION_DENIED,
            Error::Runtime(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::InvalidTransition { .. } => ttrpc::Code::UNKNOWN,
            Error::Checkpoint(e) => e.code(),
        }
    }

    pub fn into_ttrpc(self) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), self.to_string()))
    }
}

/// What a failed runtime command said: the last error in its JSON log (`--log`; runc also
/// prints it on stderr, crun may not), then its stderr and stdout, without repeats.
pub fn runtime_said(log: Option<&Path>, stderr: &str, stdout: &str) -> String {
    let logged = log.and_then(last_log_error).unwrap_or_default();
    let mut said: Vec<&str> = Vec::new();
    for part in [logged.as_str(), stderr.trim(), stdout.trim()] {
        if !part.is_empty() && !said.iter().any(|s| s.contains(part)) {
            said.push(part);
        }
    }
    said.join("; ")
}

/// Turns a runtime (runc crate) error into ours, keeping what runc said (also in `log`, the
/// runtime's JSON log). runc's own "container does not exist" becomes NotFound, as
/// containerd expects.
pub fn runtime_error(what: &str, err: runc::error::Error, log: Option<&Path>) -> Error {
    let text = match &err {
        runc::error::Error::CommandFailed {
            status,
            stdout,
            stderr,
        } => format!(
            "{what}: runtime exited with {status}: {}",
            runtime_said(log, stderr, stdout)
        ),
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

/// The last error a runtime logged in its JSON log (`{"level":"error","msg":...}`).
pub fn last_log_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v["level"] == "error").then(|| v["msg"].as_str().unwrap_or_default().to_string())
    })
}

/// Whether a failed kill means the process is already gone (the words runc and crun use;
/// the Go shim's checkKillError).
pub fn is_already_finished(message: &str) -> bool {
    message.contains("process already finished")
        || message.contains("container not running")
        || message.to_lowercase().contains("no such process")
}

/// Whether the runtime's message says the container is gone (runc: "does not exist",
/// crun: "No such file or directory" on its state).
pub fn is_not_exist(message: &str) -> bool {
    message.contains("does not exist")
        || message.contains("container not found")
        || (message.contains("cannot open directory")
            && message.contains("No such file or directory"))
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
        assert_eq!(
            status(Error::PermissionDenied("x".into())).0,
            ttrpc::Code::PERMISSION_DENIED
        );
        let (code, msg) = status(Error::Runtime("runc: boom".into()));
        assert_eq!((code, msg.as_str()), (ttrpc::Code::UNKNOWN, "runc: boom"));
    }

    #[test]
    fn runc_not_exist_is_not_found() {
        assert!(is_not_exist("container \"c1\" does not exist"));
        assert!(!is_not_exist("permission denied"));
        // crun delete after `checkpoint --exit` removed the container's state.
        assert!(is_not_exist(
            "cannot open directory `/run/containerd/runc/default/c1`: No such file or directory"
        ));
        let err = runtime_error(
            "delete",
            runc::error::Error::ProcessSpawnFailed(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )),
            None,
        );
        assert!(
            err.to_string().contains("OCI runtime binary was not found"),
            "{err}"
        );
    }

    #[test]
    fn runtime_words_come_from_its_log_and_stderr_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"container \\\"c1\\\" does not exist\"}\n",
        )
        .unwrap();
        assert_eq!(
            runtime_said(Some(&log), "container \"c1\" does not exist\n", ""),
            "container \"c1\" does not exist"
        );
        assert_eq!(
            runtime_said(Some(&log), "", "out"),
            "container \"c1\" does not exist; out"
        );
        assert_eq!(runtime_said(None, " err ", ""), "err");
        assert!(is_already_finished("container not running"));
        assert!(is_already_finished("No such process"));
        assert!(!is_already_finished("permission denied"));
    }

    #[test]
    fn last_logged_error_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"hi\"}\n{\"level\":\"error\",\"msg\":\"criu failed: type NOTIFY errno 0\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_log_error(&log).as_deref(),
            Some("criu failed: type NOTIFY errno 0")
        );
        assert_eq!(last_log_error(&dir.path().join("none")), None);
    }
}
