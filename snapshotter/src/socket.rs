//! Unix socket setup: directory creation, stale socket detection, permissions
//! and removal on shutdown.

use std::fs::{self, DirBuilder, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{debug, info, warn};
use tokio::net::UnixListener;

use crate::error::{Error, Result};

/// Mode of directories we create (root-only).
pub const DIR_MODE: u32 = 0o700;
/// Mode of the gRPC socket (root-only).
pub const SOCKET_MODE: u32 = 0o600;

/// Creates `path` and any missing parents with mode 0700. Existing
/// directories are left as they are (the socket may live in a shared
/// directory such as `/run`).
pub fn create_private_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| Error::io("failed to create directory", path, e))
}

/// A bound listening socket. Dropping it removes the socket file, provided
/// the file is still the one we created.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// (device, inode) of the socket file we created.
    id: (u64, u64),
}

impl BoundSocket {
    /// Prepares the socket's directory, clears a stale socket file and binds
    /// a listener with mode 0600. Fails with [`Error::AlreadyListening`] if a
    /// live server owns the path.
    ///
    /// Must be called within a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        remove_stale(path)?;

        let listener =
            UnixListener::bind(path).map_err(|e| Error::io("failed to bind socket", path, e))?;
        // The parent directory is normally private already, so the short
        // window before chmod is harmless; tighten the mode all the same.
        fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| Error::io("failed to set permissions of socket", path, e))?;
        let meta = fs::metadata(path).map_err(|e| Error::io("failed to stat socket", path, e))?;
        Ok(BoundSocket {
            listener: Some(listener),
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the listener out to serve on; the socket file is still removed
    /// when `self` is dropped.
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => match fs::remove_file(&self.path) {
                Ok(()) => debug!("removed socket {}", self.path.display()),
                Err(e) => warn!("failed to remove socket {}: {e}", self.path.display()),
            },
            Ok(_) => warn!(
                "socket {} was replaced by another file; leaving it in place",
                self.path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => warn!("failed to stat socket {}: {e}", self.path.display()),
        }
    }
}

/// Removes a socket file left behind by a previous run. Errors out if a
/// server still accepts connections on it or if the path is not a socket.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("failed to stat socket path", path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    // A blocking connect on a unix socket returns at once: either someone is
    // listening (success, or a full backlog) or nobody is (ECONNREFUSED).
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(Error::AlreadyListening(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            // EAGAIN: the listener's backlog is full, so it is alive.
            return Err(Error::AlreadyListening(path.to_owned()));
        }
        Err(e) => return Err(Error::io("failed to probe existing socket", path, e)),
    }
    info!("removing stale socket {}", path.display());
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to remove stale socket", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removes_stale_socket_and_sets_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/s.sock");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Bind and drop a std listener: the file stays but nobody listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());

        let bound = BoundSocket::bind(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, SOCKET_MODE);
        drop(bound);
        assert!(!path.exists(), "socket must be removed on drop");
    }

    #[tokio::test]
    async fn creates_missing_parent_private() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("new");
        let bound = BoundSocket::bind(&parent.join("s.sock")).unwrap();
        let mode = fs::metadata(&parent).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, DIR_MODE);
        drop(bound);
    }

    #[tokio::test]
    async fn refuses_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = BoundSocket::bind(&path).unwrap_err();
        assert!(matches!(err, Error::AlreadyListening(_)), "{err}");
        assert!(path.exists(), "live socket must be left alone");
    }

    #[tokio::test]
    async fn refuses_non_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fs::write(&path, b"data").unwrap();
        let err = BoundSocket::bind(&path).unwrap_err();
        assert!(matches!(err, Error::NotASocket(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"data");
    }

    #[tokio::test]
    async fn drop_leaves_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let bound = BoundSocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"other").unwrap();
        drop(bound);
        assert_eq!(fs::read(&path).unwrap(), b"other");
    }
}
