//! End-to-end tests: run the server on a unix socket in a temp dir and talk
//! to it with the generated tonic client, as containerd would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use revive_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use revive_proto::snapshots::v1::{
    CleanupRequest, ListSnapshotsRequest, PrepareSnapshotRequest, StatSnapshotRequest, UsageRequest,
};
use revive_snapshotter::{Config, Error, Snapshotter};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server running in the background; stopped via `stop`.
struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    root: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<revive_snapshotter::Result<()>>,
}

impl Running {
    async fn stop(self) -> revive_snapshotter::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    // Nested, not-yet-existing directories exercise directory creation.
    let socket = dir.path().join("run/revive/snapshotter.sock");
    let root = dir.path().join("lib/revive/snapshotter");
    let snapshotter = Snapshotter::bind(Config::new(&socket, &root)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(snapshotter.serve(async {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        socket,
        root,
        stop,
        task,
    }
}

async fn connect(socket: &Path) -> Result<SnapshotsClient<Channel>, BoxError> {
    let socket = socket.to_owned();
    // The URI is ignored; the connector always dials the unix socket.
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(SnapshotsClient::new(channel))
}

#[tokio::test]
async fn list_returns_empty_stream() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();

    let mut stream = client
        .list(ListSnapshotsRequest {
            snapshotter: "revive".into(),
            filters: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap();
    assert!(first.is_none(), "expected no snapshots, got {first:?}");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn stat_and_usage_return_not_found() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();

    let status = client
        .stat(StatSnapshotRequest {
            snapshotter: "revive".into(),
            key: "default/1/sha256:abc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("default/1/sha256:abc"),
        "message should name the key: {status:?}"
    );

    let status = client
        .usage(UsageRequest {
            snapshotter: "revive".into(),
            key: "k".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn cleanup_succeeds() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();
    client
        .cleanup(CleanupRequest {
            snapshotter: "revive".into(),
        })
        .await
        .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn prepare_is_unimplemented() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();

    let status = client
        .prepare(PrepareSnapshotRequest {
            snapshotter: "revive".into(),
            key: "k".into(),
            parent: String::new(),
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(
        status.message(),
        "revive-snapshotter: Prepare is not implemented yet"
    );

    server.stop().await.unwrap();
}

#[tokio::test]
async fn second_server_on_live_socket_fails() {
    let server = start().await;

    let other_root = server.root.with_file_name("other-root");
    let err = Snapshotter::bind(Config::new(&server.socket, &other_root)).unwrap_err();
    assert!(matches!(err, Error::AlreadyListening(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("already listening") && msg.contains(&*server.socket.to_string_lossy()),
        "unclear error: {msg}"
    );

    // The failed attempt must not have disturbed the running server.
    let mut client = connect(&server.socket).await.unwrap();
    client
        .list(ListSnapshotsRequest::default())
        .await
        .expect("first server still serves");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn creates_private_dirs_and_socket_and_cleans_up() {
    let server = start().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    assert_eq!(mode(&server.root), 0o700);
    assert_eq!(mode(server.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&server.socket), 0o600);

    let socket = server.socket.clone();
    server.stop().await.unwrap();
    assert!(!socket.exists(), "socket file must be removed on shutdown");
}

#[tokio::test]
async fn replaces_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    // Left over from a crashed run: the file exists but nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());

    let snapshotter = Snapshotter::bind(Config::new(&socket, dir.path().join("root"))).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(snapshotter.serve(async {
        let _ = stopped.await;
    }));
    let mut client = connect(&socket).await.unwrap();
    client.cleanup(CleanupRequest::default()).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_clients() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let mut config = Config::new(&socket, dir.path().join("root"));
    config.shutdown_grace = Duration::from_millis(200);
    let snapshotter = Snapshotter::bind(config).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(snapshotter.serve(async {
        let _ = stopped.await;
    }));

    // A well-behaved idle gRPC client goes away on GOAWAY...
    let mut client = connect(&socket).await.unwrap();
    client.cleanup(CleanupRequest::default()).await.unwrap();
    // ...but a peer that connected and never spoke HTTP/2 keeps the
    // connection open; shutdown must not wait for it forever.
    let silent = UnixStream::connect(&socket).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("shutdown hung on an open connection")
        .unwrap()
        .unwrap();
    assert!(!socket.exists());
    drop((client, silent));
}
