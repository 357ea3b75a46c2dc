//! End-to-end tests: run the server on a unix socket in a temp dir and talk
//! to it with the generated tonic client, as containerd would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use revive_proto::prost_types::FieldMask;
use revive_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use revive_proto::snapshots::v1::{
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest,
    UsageRequest, UsageResponse, ViewSnapshotRequest,
};
use revive_proto::types::Mount;
use revive_snapshotter::checkpoint::{Base, BaseFuture, BaseSource};
use revive_snapshotter::{Config, Error, Snapshotter};
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server running in the background; stopped via `stop`.
struct Running {
    dir: tempfile::TempDir,
    socket: PathBuf,
    root: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<revive_snapshotter::Result<()>>,
}

impl Running {
    async fn stop(self) -> revive_snapshotter::Result<()> {
        self.stop_keep_dir().await.1
    }

    /// Stops the server and returns its directory for a restart.
    async fn stop_keep_dir(self) -> (tempfile::TempDir, revive_snapshotter::Result<()>) {
        let _ = self.stop.send(());
        let res = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked");
        (self.dir, res)
    }

    /// Stops the server and starts a new one on the same root and socket.
    async fn restart(self) -> Running {
        let (dir, res) = self.stop_keep_dir().await;
        res.unwrap();
        start_in(dir)
    }
}

async fn start() -> Running {
    start_in(tempfile::tempdir().unwrap())
}

/// Starts a server whose socket and root live in `dir`; the same `dir`
/// gives the same root, as after a restart.
fn start_in(dir: tempfile::TempDir) -> Running {
    start_with_bases(dir, None)
}

/// [`start_in`], with a source of checkpoints' base images.
fn start_with_bases(dir: tempfile::TempDir, bases: Option<Arc<dyn BaseSource>>) -> Running {
    // Nested, not-yet-existing directories exercise directory creation.
    let socket = dir.path().join("run/revive/snapshotter.sock");
    let root = dir.path().join("lib/revive/snapshotter");
    let snapshotter = Snapshotter::bind_with_bases(Config::new(&socket, &root), bases).unwrap();
    let (stop, task) = serve(snapshotter);
    Running {
        dir,
        socket,
        root,
        stop,
        task,
    }
}

/// Serves `snapshotter` in the background until the returned sender fires (or is dropped).
fn serve(
    snapshotter: Snapshotter,
) -> (
    oneshot::Sender<()>,
    JoinHandle<revive_snapshotter::Result<()>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(snapshotter.serve(async {
        let _ = stopped.await;
    }));
    (stop, task)
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

    let status = stat(&mut client, "default/1/sha256:abc").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("default/1/sha256:abc"),
        "message should name the key: {status:?}"
    );

    let status = usage(&mut client, "k").await.unwrap_err();
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
    let (stop, task) = serve(snapshotter);
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
    let (stop, task) = serve(snapshotter);

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

// ---------------------------------------------------------------------------
// Full lifecycle through gRPC.

const SNAPSHOTTER: &str = "revive";
const PARENT_FILE: &str = "from-parent.txt";
const PARENT_DATA: &[u8] = b"written into the committed layer\n";
const UPPER_FILE: &str = "from-upper.txt";
const UPPER_DATA: &[u8] = b"upper\n";

type Client = SnapshotsClient<Channel>;

fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn prepare(
    client: &mut Client,
    key: &str,
    parent: &str,
) -> Result<Vec<Mount>, tonic::Status> {
    let resp = client
        .prepare(PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
            parent: parent.into(),
            labels: labels(&[("origin", key)]),
        })
        .await?;
    Ok(resp.into_inner().mounts)
}

async fn commit(client: &mut Client, name: &str, key: &str) -> Result<(), tonic::Status> {
    client
        .commit(CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: name.into(),
            key: key.into(),
            labels: labels(&[("containerd.io/snapshot.ref", name)]),
            parent: String::new(),
        })
        .await?;
    Ok(())
}

async fn view(client: &mut Client, key: &str, parent: &str) -> Result<Vec<Mount>, tonic::Status> {
    let resp = client
        .view(ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
            parent: parent.into(),
            labels: Default::default(),
        })
        .await?;
    Ok(resp.into_inner().mounts)
}

async fn mounts(client: &mut Client, key: &str) -> Result<Vec<Mount>, tonic::Status> {
    let resp = client
        .mounts(MountsRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        })
        .await?;
    Ok(resp.into_inner().mounts)
}

async fn stat(client: &mut Client, key: &str) -> Result<Info, tonic::Status> {
    let resp = client
        .stat(StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        })
        .await?;
    Ok(resp.into_inner().info.expect("stat returns info"))
}

async fn remove(client: &mut Client, key: &str) -> Result<(), tonic::Status> {
    client
        .remove(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        })
        .await?;
    Ok(())
}

async fn usage(client: &mut Client, key: &str) -> Result<UsageResponse, tonic::Status> {
    Ok(client
        .usage(UsageRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        })
        .await?
        .into_inner())
}

/// Names of the snapshots matching `filters`, sorted, and the number of
/// messages they came in.
async fn list(
    client: &mut Client,
    filters: &[&str],
) -> Result<(Vec<String>, usize), tonic::Status> {
    let mut stream = client
        .list(ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.into(),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        })
        .await?
        .into_inner();
    let mut names = Vec::new();
    let mut messages = 0;
    while let Some(msg) = stream.message().await? {
        messages += 1;
        names.extend(msg.info.into_iter().map(|i| i.name));
    }
    names.sort();
    Ok((names, messages))
}

fn code<T: std::fmt::Debug>(res: Result<T, tonic::Status>) -> Code {
    res.expect_err("expected an error").code()
}

fn option<'a>(mount: &'a Mount, prefix: &str) -> &'a str {
    mount
        .options
        .iter()
        .find_map(|o| o.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} option in {mount:?}"))
}

/// Unmounts (lazily, so nothing is left behind even if a test fails while
/// something is open) when dropped.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("failed to unmount {}: {e}", self.0.display());
        }
    }
}

/// Mounts `mount` (as containerd would) at `target`.
fn mount_at(mount: &Mount, target: &Path) -> MountGuard {
    use nix::mount::MsFlags;
    std::fs::create_dir_all(target).unwrap();
    let data = mount.options.join(",");
    nix::mount::mount(
        Some(mount.source.as_str()),
        target,
        Some(mount.r#type.as_str()),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| panic!("mount {mount:?} at {}: {e}", target.display()));
    MountGuard(target.to_owned())
}

#[tokio::test]
async fn full_lifecycle_survives_restart() {
    let server = start().await;
    let snapshots_dir = server.root.join("snapshots");
    let mut client = connect(&server.socket).await.unwrap();

    // Prepare a first layer: no parent, so a writable bind mount of its fs.
    let m = prepare(&mut client, "layer-1-extract", "").await.unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(m[0].options, ["rw", "rbind"]);
    let layer_fs = PathBuf::from(&m[0].source);
    assert!(layer_fs.starts_with(&snapshots_dir), "{layer_fs:?}");
    assert!(layer_fs.ends_with("fs") && layer_fs.is_dir());
    assert_eq!(mounts(&mut client, "layer-1-extract").await.unwrap(), m);

    // "Unpack" into it and commit.
    std::fs::write(layer_fs.join(PARENT_FILE), PARENT_DATA).unwrap();
    commit(&mut client, "layer-1", "layer-1-extract")
        .await
        .unwrap();
    assert_eq!(
        code(stat(&mut client, "layer-1-extract").await),
        Code::NotFound
    );
    let layer = stat(&mut client, "layer-1").await.unwrap();
    assert_eq!(layer.kind, Kind::Committed as i32);
    assert_eq!(layer.parent, "");
    assert_eq!(
        layer.labels,
        labels(&[("containerd.io/snapshot.ref", "layer-1")])
    );
    assert!(layer.created_at.is_some() && layer.updated_at.is_some());
    assert_eq!(
        code(mounts(&mut client, "layer-1").await),
        Code::FailedPrecondition,
        "committed snapshots have no mounts"
    );
    assert!(
        layer_fs.join(PARENT_FILE).exists(),
        "commit keeps the directory"
    );

    // A container on top: overlay with the layer as lowerdir.
    let m = prepare(&mut client, "container-1", "layer-1")
        .await
        .unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0].r#type.as_str(), m[0].source.as_str()),
        ("overlay", "overlay")
    );
    assert!(m[0].options.iter().any(|o| o == "index=off"), "{m:?}");
    assert_eq!(Path::new(option(&m[0], "lowerdir=")), layer_fs);
    let upper = PathBuf::from(option(&m[0], "upperdir="));
    let work = PathBuf::from(option(&m[0], "workdir="));
    assert!(upper.is_dir() && work.is_dir());
    assert_ne!(upper, layer_fs);
    let container = stat(&mut client, "container-1").await.unwrap();
    assert_eq!(container.kind, Kind::Active as i32);
    assert_eq!(container.parent, "layer-1");
    assert_eq!(container.labels, labels(&[("origin", "container-1")]));
    std::fs::write(upper.join(UPPER_FILE), UPPER_DATA).unwrap();

    // Actually mount it, as containerd would, and see both layers.
    if nix::unistd::Uid::effective().is_root() {
        let mnt = tempfile::tempdir().unwrap();
        let target = mnt.path().join("rootfs");
        let guard = mount_at(&m[0], &target);
        assert_eq!(
            std::fs::read(target.join(PARENT_FILE)).unwrap(),
            PARENT_DATA
        );
        assert_eq!(std::fs::read(target.join(UPPER_FILE)).unwrap(), UPPER_DATA);
        drop(guard);
        assert!(!target.join(PARENT_FILE).exists(), "unmounted");
    } else {
        eprintln!("SKIPPED (needs root): mounting the overlay");
    }

    // A view of the layer: read-only bind of the layer itself.
    let view = view(&mut client, "view-1", "layer-1").await.unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].r#type, "bind");
    assert_eq!(PathBuf::from(&view[0].source), layer_fs);
    assert_eq!(view[0].options, ["ro", "rbind"]);
    assert_eq!(
        stat(&mut client, "view-1").await.unwrap().kind,
        Kind::View as i32
    );

    // Refusals.
    assert_eq!(
        code(prepare(&mut client, "container-1", "").await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(prepare(&mut client, "x", "missing").await),
        Code::NotFound
    );
    let c = code(prepare(&mut client, "x", "container-1").await);
    assert!(
        matches!(c, Code::InvalidArgument | Code::FailedPrecondition),
        "parent must be committed: {c:?}"
    );
    assert_eq!(
        code(prepare(&mut client, "", "").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(remove(&mut client, "layer-1").await),
        Code::FailedPrecondition
    );
    assert_eq!(code(remove(&mut client, "missing").await), Code::NotFound);
    assert_eq!(
        code(commit(&mut client, "v", "view-1").await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(commit(&mut client, "layer-1", "container-1").await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(commit(&mut client, "n", "missing").await),
        Code::NotFound
    );

    // Update: only labels.
    let updated = client
        .update(UpdateSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            info: Some(Info {
                name: "container-1".into(),
                labels: labels(&[("team", "revive"), ("origin", "ignored")]),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["labels.team".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        updated.labels,
        labels(&[("origin", "container-1"), ("team", "revive")])
    );
    assert_eq!(updated.parent, "layer-1", "parent is not changed by update");
    let status = client
        .update(UpdateSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            info: Some(Info {
                name: "container-1".into(),
                parent: "other".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["parent".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // List with filters.
    let all = ["container-1", "layer-1", "view-1"];
    assert_eq!(list(&mut client, &[]).await.unwrap().0, all);
    assert_eq!(
        list(&mut client, &["kind==committed"]).await.unwrap().0,
        ["layer-1"]
    );
    assert_eq!(
        list(&mut client, &["parent==layer-1"]).await.unwrap().0,
        ["container-1", "view-1"]
    );
    assert_eq!(
        list(&mut client, &["parent==layer-1,kind!=view"])
            .await
            .unwrap()
            .0,
        ["container-1"]
    );
    assert_eq!(
        list(&mut client, &["name==view-1", "kind==committed"])
            .await
            .unwrap()
            .0,
        ["layer-1", "view-1"]
    );
    assert_eq!(
        list(
            &mut client,
            &[r#"labels."containerd.io/snapshot.ref"==layer-1"#]
        )
        .await
        .unwrap()
        .0,
        ["layer-1"]
    );
    assert_eq!(
        list(&mut client, &["labels.team"]).await.unwrap().0,
        ["container-1"]
    );
    assert_eq!(
        list(&mut client, &["name~=^cont"]).await.unwrap().0,
        ["container-1"]
    );
    assert_eq!(
        code(list(&mut client, &["name=="]).await),
        Code::InvalidArgument
    );

    // Usage: stored at commit for the layer, measured live for the container.
    let u = usage(&mut client, "layer-1").await.unwrap();
    assert_eq!((u.size, u.inodes), (PARENT_DATA.len() as i64, 2));
    let u = usage(&mut client, "container-1").await.unwrap();
    assert_eq!((u.size, u.inodes), (UPPER_DATA.len() as i64, 2));
    std::fs::write(upper.join("more"), b"123").unwrap();
    let u = usage(&mut client, "container-1").await.unwrap();
    assert_eq!((u.size, u.inodes), (UPPER_DATA.len() as i64 + 3, 3));

    // Restart on the same root: everything is still there.
    drop(client);
    let server = server.restart().await;
    let mut client = connect(&server.socket).await.unwrap();
    assert_eq!(stat(&mut client, "layer-1").await.unwrap(), layer);
    assert_eq!(stat(&mut client, "container-1").await.unwrap(), updated);
    assert_eq!(mounts(&mut client, "container-1").await.unwrap(), m);
    assert_eq!(mounts(&mut client, "view-1").await.unwrap(), view);
    assert_eq!(list(&mut client, &[]).await.unwrap().0, all);
    let u = usage(&mut client, "layer-1").await.unwrap();
    assert_eq!((u.size, u.inodes), (PARENT_DATA.len() as i64, 2));
    assert_eq!(
        code(remove(&mut client, "layer-1").await),
        Code::FailedPrecondition
    );

    // Cleanup removes an orphan directory and a stale temp dir, nothing else.
    let orphan = snapshots_dir.join("999");
    std::fs::create_dir_all(orphan.join("fs")).unwrap();
    std::fs::create_dir_all(snapshots_dir.join("new-leftover")).unwrap();
    client.cleanup(CleanupRequest::default()).await.unwrap();
    assert!(!orphan.exists());
    assert!(!snapshots_dir.join("new-leftover").exists());
    assert!(layer_fs.join(PARENT_FILE).exists());
    assert!(upper.join(UPPER_FILE).exists());

    // Remove children first, then the layer; directories go with them.
    remove(&mut client, "container-1").await.unwrap();
    assert!(!upper.exists() && !work.exists());
    remove(&mut client, "view-1").await.unwrap();
    remove(&mut client, "layer-1").await.unwrap();
    assert!(!layer_fs.exists());
    assert_eq!(code(stat(&mut client, "layer-1").await), Code::NotFound);
    assert!(list(&mut client, &[]).await.unwrap().0.is_empty());
    let left: Vec<_> = std::fs::read_dir(&snapshots_dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    drop(client);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn active_chain_mounts_nearest_parent_first() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();

    let mut fs_dirs = Vec::new();
    let mut parent = String::new();
    for i in 1..=3 {
        let key = format!("extract-{i}");
        let m = prepare(&mut client, &key, &parent).await.unwrap();
        let fs = if parent.is_empty() {
            m[0].source.clone()
        } else {
            option(&m[0], "upperdir=").to_owned()
        };
        std::fs::write(Path::new(&fs).join(format!("layer-{i}")), b"x").unwrap();
        fs_dirs.push(fs);
        parent = format!("layer-{i}");
        commit(&mut client, &parent, &key).await.unwrap();
    }
    let m = prepare(&mut client, "rootfs", "layer-3").await.unwrap();
    let lower: Vec<&str> = option(&m[0], "lowerdir=").split(':').collect();
    assert_eq!(lower, [&fs_dirs[2], &fs_dirs[1], &fs_dirs[0]]);

    // A view of several layers: overlay with only lower dirs.
    let view = view(&mut client, "view", "layer-2").await.unwrap();
    assert_eq!(view[0].r#type, "overlay");
    assert_eq!(
        view[0].options,
        [
            "index=off".to_owned(),
            format!("lowerdir={}:{}", fs_dirs[1], fs_dirs[0])
        ]
    );

    if nix::unistd::Uid::effective().is_root() {
        let mnt = tempfile::tempdir().unwrap();
        let rootfs = mount_at(&m[0], &mnt.path().join("rootfs"));
        let ro = mount_at(&view[0], &mnt.path().join("view"));
        for i in 1..=3 {
            assert!(rootfs.0.join(format!("layer-{i}")).exists());
        }
        assert!(ro.0.join("layer-2").exists() && !ro.0.join("layer-3").exists());
        assert!(
            std::fs::write(ro.0.join("new"), b"x").is_err(),
            "view is read-only"
        );
        std::fs::write(rootfs.0.join("new"), b"x").unwrap();
        assert!(Path::new(option(&m[0], "upperdir=")).join("new").exists());
    } else {
        eprintln!("SKIPPED (needs root): mounting the overlays");
    }

    drop(client);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn list_streams_in_batches() {
    let server = start().await;
    let mut client = connect(&server.socket).await.unwrap();
    for i in 0..130 {
        prepare(&mut client, &format!("k{i:03}"), "").await.unwrap();
    }
    let (names, messages) = list(&mut client, &[]).await.unwrap();
    assert_eq!(names.len(), 130);
    assert_eq!(messages, 2, "100 infos per message");
    let (names, _) = list(&mut client, &["name~=^k00"]).await.unwrap();
    assert_eq!(names.len(), 10);
    drop(client);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn second_server_on_same_root_fails() {
    let server = start().await;
    let other_socket = server.socket.with_file_name("other.sock");
    let err = Snapshotter::bind(Config::new(&other_socket, &server.root)).unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert!(
        !other_socket.exists(),
        "the failed instance removes its socket"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests() {
    let server = start().await;
    let client = connect(&server.socket).await.unwrap();

    // Racing prepares of one key: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(
            async move { prepare(&mut c, "same", "").await },
        ));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(won, 1);

    // Distinct keys with cleanups running meanwhile: all succeed and keep
    // their directories.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                c.cleanup(CleanupRequest::default()).await.map(|_| None)
            } else {
                prepare(&mut c, &format!("k{i}"), "").await.map(Some)
            }
        }));
    }
    let mut sources = std::collections::HashSet::new();
    for t in tasks {
        if let Some(m) = t.await.unwrap().unwrap() {
            assert!(Path::new(&m[0].source).is_dir(), "{m:?}");
            assert!(sources.insert(m[0].source.clone()), "ids are unique");
        }
    }
    assert_eq!(sources.len(), 12);

    drop(client);
    server.stop().await.unwrap();
}

/// Base images for checkpoint tests: one image, `docker.io/revive/base:1`, whose single
/// layer is a directory of the test.
#[derive(Debug)]
struct FakeBases {
    layer: PathBuf,
}

impl BaseSource for FakeBases {
    fn base<'a>(&'a self, namespace: &'a str, refs: &'a [String]) -> BaseFuture<'a> {
        Box::pin(async move {
            assert_eq!(namespace, "default");
            match refs.iter().find(|r| *r == "docker.io/revive/base:1") {
                Some(image) => Ok(Base {
                    image: image.clone(),
                    lowers: vec![self.layer.clone()],
                }),
                None => Err(
                    revive_snapshotter::error::SnapshotError::FailedPrecondition(format!(
                        "the checkpoint's base image {refs:?} is not in containerd"
                    )),
                ),
            }
        })
    }
}

/// Writes a checkpoint archive's layout into `dir`: CRIU images, metadata naming `base`, a
/// rootfs diff adding `/token` and `/tmp/new` (without listing `/tmp`), deleting `/etc/gone`
/// through deleted.files and `/old` through a whiteout.
fn write_archive(dir: &Path, base: &str) {
    std::fs::create_dir(dir.join("checkpoint")).unwrap();
    for img in ["inventory.img", "pstree.img", "pages-1.img"] {
        std::fs::write(dir.join("checkpoint").join(img), b"criu").unwrap();
    }
    std::fs::write(
        dir.join("config.dump"),
        format!(r#"{{"id":"c1","name":"c1","rootfsImageName":"{base}"}}"#),
    )
    .unwrap();
    std::fs::write(
        dir.join("spec.dump"),
        br#"{"process":{"args":["sh"]},"linux":{},"mounts":[]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("deleted.files"), br#"["/etc/gone"]"#).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [("token", &b"t-1"[..]), ("tmp/new", b"n"), (".wh.old", b"")] {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, data).unwrap();
    }
    std::fs::write(dir.join("rootfs-diff.tar"), tar.into_inner().unwrap()).unwrap();
}

/// Prepares `key` without a parent, as containerd does to unpack a layer, and writes a
/// checkpoint archive naming `base` into it; returns the directory its bind mount names.
async fn prepare_archive(client: &mut Client, key: &str, base: &str) -> PathBuf {
    let mounts = prepare(client, key, "").await.unwrap();
    assert_eq!(mounts[0].r#type, "bind");
    let dir = PathBuf::from(&mounts[0].source);
    write_archive(&dir, base);
    dir
}

#[tokio::test]
async fn a_checkpoint_layer_becomes_its_containers_rootfs() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED a_checkpoint_layer_becomes_its_containers_rootfs: needs root (whiteouts are devices)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base-layer");
    std::fs::create_dir_all(base.join("tmp")).unwrap();
    std::fs::set_permissions(base.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::write(base.join("etc/gone"), b"x").unwrap();
    let bases: Arc<dyn BaseSource> = Arc::new(FakeBases {
        layer: base.clone(),
    });
    let server = start_with_bases(dir, Some(Arc::clone(&bases)));
    let mut client = connect(&server.socket).await.unwrap();

    // The checkpoint image's layer, unpacked as containerd does, and a hostile one.
    let layer = prepare_archive(
        &mut client,
        "default/1/extract-1",
        "docker.io/revive/base:1",
    )
    .await;
    commit(&mut client, "default/2/sha256:ck", "default/1/extract-1")
        .await
        .unwrap();
    let hostile = prepare_archive(
        &mut client,
        "default/3/extract-2",
        "docker.io/revive/base:1",
    )
    .await;
    std::fs::remove_file(hostile.join("checkpoint/pages-1.img")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", hostile.join("checkpoint/pages-1.img")).unwrap();
    commit(
        &mut client,
        "default/4/sha256:hostile",
        "default/3/extract-2",
    )
    .await
    .unwrap();
    prepare_archive(
        &mut client,
        "default/5/extract-3",
        "docker.io/revive/elsewhere:1",
    )
    .await;
    commit(
        &mut client,
        "default/6/sha256:missing",
        "default/5/extract-3",
    )
    .await
    .unwrap();

    // A container on the checkpoint layer: the rebuilt rootfs over the base.
    let ctr_mounts = prepare(&mut client, "default/7/ctr", "default/2/sha256:ck")
        .await
        .unwrap();
    let snapshot_dir = layer.parent().unwrap();
    let rootfs = snapshot_dir.join("rootfs");
    assert_eq!(
        option(&ctr_mounts[0], "lowerdir="),
        format!("{}:{}", rootfs.display(), base.display())
    );
    let upper = PathBuf::from(option(&ctr_mounts[0], "upperdir="));
    let handoff = revive_checkpoint::handoff::find(&upper).unwrap().unwrap();
    assert_eq!(handoff.archive, layer);
    assert_eq!(handoff.base_image, "docker.io/revive/base:1");
    assert_eq!(std::fs::read(rootfs.join("token")).unwrap(), b"t-1");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode();
    assert_eq!(
        mode(&rootfs.join("tmp")) & 0o7777,
        0o1777,
        "/tmp keeps the base's mode"
    );
    use std::os::unix::fs::FileTypeExt;
    for whiteout in ["etc/gone", "old"] {
        let meta = std::fs::symlink_metadata(rootfs.join(whiteout)).unwrap();
        assert!(
            meta.file_type().is_char_device(),
            "{whiteout} is a whiteout"
        );
    }
    assert_eq!(mode(&layer) & 0o777, 0o700, "the archive is root-only");

    // A view on it has both lowers too, and no handoff.
    let view = view(&mut client, "default/8/view", "default/2/sha256:ck")
        .await
        .unwrap();
    assert_eq!(
        option(&view[0], "lowerdir="),
        option(&ctr_mounts[0], "lowerdir=")
    );

    // Hostile and incomplete checkpoints fail the Prepare and leave nothing.
    let err = prepare(&mut client, "default/9/ctr2", "default/4/sha256:hostile")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("pages-1.img is a symlink"),
        "{}",
        err.message()
    );
    assert_eq!(
        code(stat(&mut client, "default/9/ctr2").await),
        Code::NotFound
    );
    assert!(!hostile.parent().unwrap().join("new-rootfs").exists());
    assert!(!hostile.parent().unwrap().join("rootfs").exists());
    let err = prepare(&mut client, "default/10/ctr3", "default/6/sha256:missing")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("elsewhere"), "{}", err.message());

    // After a restart the container's mounts are the same.
    let (dir, res) = server.stop_keep_dir().await;
    res.unwrap();
    let server = start_with_bases(dir, Some(bases));
    let mut client = connect(&server.socket).await.unwrap();
    assert_eq!(
        mounts(&mut client, "default/7/ctr").await.unwrap(),
        ctr_mounts
    );
    server.stop().await.unwrap();
}
