//! A process's stdio: the fifos (or log URIs) containerd gives, connected to pipes the
//! process writes to and reads from, or for a terminal, the pty master the runtime sends
//! through the console socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::sync::Arc;

use log::{debug, warn};
use runc::io::IoOption;
use runc::io::NullIo;
use runc::{Io, PipedIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// The stdio containerd asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioSpec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

impl StdioSpec {
    pub fn is_null(&self) -> bool {
        self.stdin.is_empty() && self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// Where a stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fifo (or any path) opened for writing.
    Fifo(String),
    /// `file:///path`: appended to a file.
    File(String),
    /// `binary:///path?k=v`: a logging binary that gets the streams as fd 3 and 4.
    Binary { path: String, args: Vec<String> },
}

/// Parses containerd's stdout/stderr string: a path, or a `file://` / `binary://` URI.
pub fn parse_target(text: &str) -> Result<Target> {
    if let Some(rest) = text.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "log URI {text:?} has no path"
            )));
        }
        return Ok(Target::File(rest.to_string()));
    }
    if let Some(rest) = text.strip_prefix("binary://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "log URI {text:?} has no binary path"
            )));
        }
        // containerd passes each query pair to the binary as two arguments, key then value.
        let mut args = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            args.push(k.to_string());
            if !v.is_empty() {
                args.push(v.to_string());
            }
        }
        return Ok(Target::Binary {
            path: path.to_string(),
            args,
        });
    }
    if text.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "unsupported stdio URI {text:?}"
        )));
    }
    Ok(Target::Fifo(text.to_string()))
}

/// The shim's side of a process's stdio.
pub struct ProcessIo {
    /// What runc gets: pipe ends for the process, or /dev/null.
    runc_io: Option<Arc<dyn Io>>,
    /// Copies the stdin fifo into the process; ends (and closes the process's stdin) on
    /// CloseIO, which is how containerd says its stdin reached EOF.
    stdin: Mutex<Option<StdinCopy>>,
    /// Copies of stdout and stderr, each done (true) when the process closes its stream.
    copies: Mutex<Vec<watch::Receiver<bool>>>,
    /// For a terminal: the socket runc hands the pty master to, then the master itself.
    console: Option<Console>,
}

/// A process's terminal: runc connects to `socket` and sends the pty master.
struct Console {
    dir: tempfile::TempDir,
    listener: std::os::unix::net::UnixListener,
    master: std::sync::Mutex<Option<Arc<OwnedFd>>>,
}

impl Console {
    fn new() -> Result<Console> {
        let dir = tempfile::Builder::new()
            .prefix("revive-pty")
            .tempdir()
            .map_err(Error::io("creating the console socket directory"))?;
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("pty.sock"))
            .map_err(Error::io("creating the console socket"))?;
        Ok(Console {
            dir,
            listener,
            master: std::sync::Mutex::new(None),
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("pty.sock")
    }
}

/// Receives the pty master runc sends over the console socket (SCM_RIGHTS).
fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let (stream, _) = listener.accept()?;
    let mut name = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(std::io::Error::other(
        "no pty master in the console socket message",
    ))
}

impl ProcessIo {
    /// Sets up stdio for a process of container `id` in `namespace`.
    pub async fn new(
        id: &str,
        namespace: &str,
        spec: &StdioSpec,
        uid: u32,
        gid: u32,
    ) -> Result<ProcessIo> {
        if spec.terminal {
            // runc's own stdio goes to /dev/null; the process gets the pty.
            let null = NullIo::new().map_err(Error::io("opening /dev/null for stdio"))?;
            return Ok(ProcessIo {
                runc_io: Some(Arc::new(null)),
                stdin: Mutex::new(None),
                copies: Mutex::new(Vec::new()),
                console: Some(Console::new()?),
            });
        }
        if spec.is_null() {
            // No stdio at all (CRI sandboxes): /dev/null, never the runtime's own pipes,
            // which the process would inherit and keep open.
            let null = NullIo::new().map_err(Error::io("opening /dev/null for stdio"))?;
            return Ok(ProcessIo {
                runc_io: Some(Arc::new(null)),
                stdin: Mutex::new(None),
                copies: Mutex::new(Vec::new()),
                console: None,
            });
        }
        let stdout = (!spec.stdout.is_empty())
            .then(|| parse_target(&spec.stdout))
            .transpose()?;
        let stderr = (!spec.stderr.is_empty())
            .then(|| parse_target(&spec.stderr))
            .transpose()?;
        let opts = IoOption {
            open_stdin: !spec.stdin.is_empty(),
            open_stdout: true,
            open_stderr: true,
        };
        let pipes = PipedIo::new(uid, gid, &opts).map_err(Error::io("creating stdio pipes"))?;
        let mut copies = Vec::new();

        match (&stdout, &stderr) {
            (Some(Target::Binary { path, args }), _) => {
                let read_end = |pipe: &Option<runc::Pipe>| -> Result<OwnedFd> {
                    pipe.as_ref()
                        .ok_or_else(|| Error::Internal("no output pipe".into()))?
                        .rd
                        .try_clone()
                        .map_err(Error::io("duplicating an output pipe"))
                };
                start_logger(
                    id,
                    namespace,
                    path,
                    args,
                    read_end(&pipes.stdout)?,
                    read_end(&pipes.stderr)?,
                )
                .await?;
            }
            _ => {
                for (target, reader) in [(stdout, pipes.stdout()), (stderr, pipes.stderr())] {
                    let Some(reader) = reader else { continue };
                    copies.push(copy_out(target, reader).await?);
                }
            }
        }

        let stdin = pipes.stdin().map(|writer| copy_in(&spec.stdin, writer));
        Ok(ProcessIo {
            runc_io: Some(Arc::new(pipes)),
            stdin: Mutex::new(stdin),
            copies: Mutex::new(copies),
            console: None,
        })
    }

    pub fn runc_io(&self) -> Option<Arc<dyn Io>> {
        self.runc_io.clone()
    }

    /// The console socket runc must send the pty master to, for a terminal.
    pub fn console_socket(&self) -> Option<PathBuf> {
        self.console.as_ref().map(Console::socket)
    }

    /// Starts waiting for the pty master; call before the runtime command that creates the
    /// process, then [`ProcessIo::attach_console`] after it.
    pub fn expect_console(&self) -> Option<JoinHandle<std::io::Result<OwnedFd>>> {
        let console = self.console.as_ref()?;
        let listener = console.listener.try_clone().ok()?;
        Some(tokio::task::spawn_blocking(move || {
            receive_master(&listener)
        }))
    }

    /// Connects the received pty master to the stdio fifos.
    pub async fn attach_console(
        &self,
        pending: Option<JoinHandle<std::io::Result<OwnedFd>>>,
        stdio: &StdioSpec,
    ) -> Result<()> {
        let (Some(console), Some(pending)) = (&self.console, pending) else {
            return Ok(());
        };
        let master = match tokio::time::timeout(std::time::Duration::from_secs(10), pending).await {
            Ok(Ok(Ok(fd))) => Arc::new(fd),
            Ok(Ok(Err(e))) => return Err(Error::io("receiving the pty master")(e)),
            _ => {
                return Err(Error::Internal(
                    "the runtime never sent the pty master".into(),
                ));
            }
        };
        if let Ok(mut slot) = console.master.lock() {
            *slot = Some(master.clone());
        }
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(Error::io("duplicating the pty master"))
        };
        // pty -> stdout
        let reader = pipe_from(dup(&master)?)?;
        let target = (!stdio.stdout.is_empty())
            .then(|| parse_target(&stdio.stdout))
            .transpose()?;
        let copy = copy_out(target, Box::new(reader)).await?;
        self.copies.lock().await.push(copy);
        // stdin -> pty
        if !stdio.stdin.is_empty() {
            let writer = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
            *self.stdin.lock().await = Some(copy_in(&stdio.stdin, Box::new(writer)));
        }
        Ok(())
    }

    /// Resizes the terminal (ResizePty).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let master = self
            .console
            .as_ref()
            .and_then(|c| c.master.lock().ok().and_then(|m| m.clone()))
            .ok_or_else(|| Error::FailedPrecondition("the process has no terminal".into()))?;
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(Error::io("resizing the terminal")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Closes the process's stdin (CloseIO), so it reads EOF.
    pub async fn close_stdin(&self) {
        if let Some(copy) = self.stdin.lock().await.take() {
            copy.stop();
        }
    }

    /// Waits until everything the process wrote has been copied out: until every holder
    /// of its stdout and stderr (the process, children it left) has closed them.
    pub async fn wait(&self) {
        let copies = self.copies.lock().await.clone();
        for mut done in copies {
            let _ = done.wait_for(|done| *done).await;
        }
    }
}

/// Where the copy of an output stream writes, opened before the copy starts.
struct Output {
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// For a fifo, a read end of our own, as containerd's Go shim holds: a client that
    /// goes away (`ctr run -d`) neither breaks the copy nor loses what `ctr task attach`
    /// can read later.
    _reader: Option<std::fs::File>,
}

/// How long Create waits for the client to open a stdout or stderr fifo for reading.
const FIFO_READER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens `target` for an output stream (`None`: nobody wants the stream).
///
/// A fifo is opened for writing with a blocking open, which returns once the client has
/// opened it for reading (containerd's client opens its fifos on a goroutine of its own,
/// and may get there after the process has exited). Writing earlier is not safe: the
/// kernel drops a fifo's data when the last of its readers and writers closes it, so a
/// short-lived process's output could vanish before the client arrives.
async fn open_output(target: Option<Target>) -> Result<Option<Output>> {
    match target {
        Some(Target::Fifo(path)) => {
            let opening = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                    let writer = std::fs::OpenOptions::new().write(true).open(&path)?;
                    let reader = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)?;
                    Ok((writer, reader))
                })
            };
            let (writer, reader) = match tokio::time::timeout(FIFO_READER_TIMEOUT, opening).await {
                Ok(Ok(Ok(files))) => files,
                Ok(Ok(Err(e))) => {
                    return Err(Error::io(&format!("opening the output fifo {path}"))(e));
                }
                Ok(Err(e)) => return Err(Error::Internal(format!("opening {path}: {e}"))),
                Err(_) => {
                    // Release the thread still blocked in open(2): a reader of our own
                    // lets it return, and everything it opened is closed with it.
                    let _ = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path);
                    return Err(Error::FailedPrecondition(format!(
                        "nobody opened the output fifo {path} for reading within {} s: the \
                         client that creates a task must read the fifos it passes (or ask \
                         for no stdio, or a log URI)",
                        FIFO_READER_TIMEOUT.as_secs()
                    )));
                }
            };
            let writer = pipe::Sender::from_file(writer)
                .map_err(Error::io(&format!("using the output fifo {path}")))?;
            Ok(Some(Output {
                writer: Box::new(writer),
                _reader: Some(reader),
            }))
        }
        Some(Target::File(path)) => {
            // As containerd's Go shim: parent directories made, the file appended to.
            if let Some(parent) = Path::new(&path).parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(&path)
                .await
            {
                Ok(f) => Ok(Some(Output {
                    writer: Box::new(f),
                    _reader: None,
                })),
                Err(e) => {
                    warn!("opening log file {path}: {e}");
                    Ok(None)
                }
            }
        }
        _ => Ok(None),
    }
}

/// Opens the target of one output stream of the process, then copies the stream to it
/// until the process closes it.
async fn copy_out(
    target: Option<Target>,
    mut reader: Box<dyn AsyncRead + Send + Sync + Unpin>,
) -> Result<watch::Receiver<bool>> {
    let output = open_output(target).await?;
    let (done, copied) = watch::channel(false);
    tokio::spawn(async move {
        match output {
            Some(mut out) => {
                if let Err(e) = copy_stream(&mut reader, &mut out.writer).await {
                    debug!("copying output: {e}");
                }
                let _ = out.writer.shutdown().await;
            }
            // Nobody wants the stream: drain it so the process never blocks on a full pipe.
            None => {
                let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            }
        }
        done.send_replace(true);
    });
    Ok(copied)
}

/// Copies until the end of `reader`, each chunk written whole before the next read (so no
/// read error can drop data already read). A pty master reads EIO once the terminal's last
/// process has closed it: for a copy, that is the end of the stream.
async fn copy_stream(
    reader: &mut (dyn AsyncRead + Send + Sync + Unpin),
    writer: &mut (dyn AsyncWrite + Send + Unpin),
) -> std::io::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(total),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// An async reader over a pty master (or any fd that supports non-blocking reads).
fn pipe_from(fd: OwnedFd) -> Result<tokio::fs::File> {
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

/// The stdin copy and the fifo it reads.
struct StdinCopy {
    path: String,
    task: JoinHandle<()>,
}

impl StdinCopy {
    /// Stops the copy, closing the process's stdin. If the copy still waits for a writer
    /// to open the fifo, opening it for writing here releases the waiting thread.
    fn stop(self) {
        self.task.abort();
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path);
    }
}

/// Copies the stdin fifo into the process until the client closes its end (EOF) or
/// CloseIO. The fifo is opened read-only with a blocking open on a thread of its own, as
/// containerd's fifo package does: a non-blocking open could read EOF before the client's
/// writer arrives.
fn copy_in(path: &str, mut writer: Box<dyn AsyncWrite + Send + Sync + Unpin>) -> StdinCopy {
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let fifo_path = path.to_string();
    std::thread::spawn(move || {
        let _ = opened_tx.send(std::fs::File::open(&fifo_path));
    });
    let path_for_task = path.to_string();
    let task = tokio::spawn(async move {
        let file = match opened_rx.await {
            Ok(Ok(file)) => file,
            Ok(Err(e)) => {
                warn!("opening stdin {path_for_task}: {e}");
                return;
            }
            Err(_) => return,
        };
        match pipe::Receiver::from_file(file) {
            Ok(mut fifo) => {
                if let Err(e) = tokio::io::copy(&mut fifo, &mut writer).await {
                    debug!("copying stdin: {e}");
                }
            }
            Err(e) => warn!("reading stdin {path_for_task}: {e}"),
        }
        let _ = writer.shutdown().await;
    });
    StdinCopy {
        path: path.to_string(),
        task,
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        if let Some(copy) = self.stdin.get_mut().take() {
            copy.stop();
        }
    }
}

/// Starts a `binary://` logger the way containerd does: the process's stdout and stderr as
/// fds 3 and 4, and fd 5 a pipe the logger closes when it is ready.
async fn start_logger(
    id: &str,
    namespace: &str,
    path: &str,
    args: &[String],
    out_fd: OwnedFd,
    err_fd: OwnedFd,
) -> Result<()> {
    // Close-on-exec: the logger must hold the ready pipe only as fd 5, or closing fd 5
    // would never reach us.
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    let raw = [out_fd.as_raw_fd(), err_fd.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(path);
    // The logger gets only CONTAINER_ID and CONTAINER_NAMESPACE, as from containerd's shim.
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(StdStdio::null())
        .stdout(StdStdio::null())
        .stderr(StdStdio::null());
    // SAFETY: only fcntl and dup2 between fork and exec (async-signal-safe), on fds that
    // stay open until after spawn returns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // Move the sources above 5 first, so no dup2 below overwrites one still needed.
            let mut high = [0; 3];
            for (slot, fd) in high.iter_mut().zip(raw) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        // In the words containerd's Go shim uses, which users and tools know.
        Error::InvalidArgument(format!(
            "starting log binary: fork/exec {path}: {}",
            errno_text(&e)
        ))
    })?;
    drop(ready_w);
    drop(out_fd);
    drop(err_fd);
    // Wait until the logger closes its end of the ready pipe (or exits).
    let ready = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 1];
        let file = std::fs::File::from(ready_r);
        let _ = std::io::Read::read(&mut &file, &mut buf);
    });
    let _ = ready.await;
    debug!("log binary {path} started as {}", child.id());
    // The logger is reaped by the shim's reaper; it exits when both streams are closed.
    // Dropping the handle neither waits for it nor kills it (its stdio is /dev/null).
    drop(child);
    Ok(())
}

/// An OS error as Go prints it: "no such file or directory".
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = nix::errno::Errno::from_raw(n).desc();
            let mut chars = text.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default()
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pty master reads EIO once the terminal is closed: the copy ends there, with
    /// everything written before it.
    #[tokio::test]
    async fn a_closed_terminal_ends_the_copy_with_all_its_output() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut slave = std::fs::File::from(pty.slave);
        std::io::Write::write_all(&mut slave, b"34 12\n").unwrap();
        drop(slave);
        let mut reader = pipe_from(pty.master).unwrap();
        let mut out = Vec::new();
        let copied = copy_stream(&mut reader, &mut out).await.unwrap();
        assert_eq!(out, b"34 12\r\n");
        assert_eq!(copied, 7);
    }

    /// A fifo's writer opens once a reader is there; what it writes reaches the reader.
    #[tokio::test]
    async fn fifo_output_waits_for_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reading = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read(path).unwrap())
        };
        let target = Some(Target::Fifo(path.to_str().unwrap().to_string()));
        let mut out = open_output(target).await.unwrap().unwrap();
        out.writer.write_all(b"hello").await.unwrap();
        drop(out);
        assert_eq!(reading.join().unwrap(), b"hello");
    }

    #[test]
    fn errors_read_like_go() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_text(&e), "no such file or directory");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("/run/fifo/x-stdout").unwrap(),
            Target::Fifo("/run/fifo/x-stdout".into())
        );
        assert_eq!(
            parse_target("file:///var/log/c.log").unwrap(),
            Target::File("/var/log/c.log".into())
        );
        assert_eq!(
            parse_target("binary:///usr/bin/logger?id=7&mode").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["id".into(), "7".into(), "mode".into()]
            }
        );
        assert!(parse_target("binary://").is_err());
        assert!(parse_target("file://").is_err());
        assert!(parse_target("http://x").is_err());
    }
}
