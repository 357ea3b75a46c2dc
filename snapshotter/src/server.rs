//! The `containerd.services.snapshots.v1.Snapshots` gRPC service.
//!
//! Only the read-only operations are implemented so far; since no snapshot can
//! be created yet, they report an empty snapshot set. Every mutating
//! operation answers `UNIMPLEMENTED` rather than pretending to succeed.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use log::debug;
use revive_proto::snapshots::v1::{
    CleanupRequest, CommitSnapshotRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    MountsRequest, MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse,
    RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse, UpdateSnapshotRequest,
    UpdateSnapshotResponse, UsageRequest, UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse,
    snapshots_server::Snapshots,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub use revive_proto::snapshots::v1::snapshots_server::SnapshotsServer;

/// Stream type returned by `List`.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

/// State shared by all requests.
#[derive(Debug, Clone)]
pub struct SnapshotService {
    root: PathBuf,
}

impl SnapshotService {
    /// Service storing its state under `root` (which must exist).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SnapshotService { root: root.into() }
    }

    /// Root directory of the snapshot state.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Wraps the service for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "revive-snapshotter: {method} is not implemented yet"
    ))
}

/// containerd maps gRPC NOT_FOUND to `errdefs.ErrNotFound`.
fn not_found(key: &str) -> Status {
    Status::not_found(format!("snapshot {key:?} does not exist"))
}

#[tonic::async_trait]
impl Snapshots for SnapshotService {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("Prepare key={:?} parent={:?}", req.key, req.parent);
        Err(unimplemented("Prepare"))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("View key={:?} parent={:?}", req.key, req.parent);
        Err(unimplemented("View"))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        debug!("Mounts key={:?}", request.get_ref().key);
        Err(unimplemented("Mounts"))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        debug!("Commit key={:?} name={:?}", req.key, req.name);
        Err(unimplemented("Commit"))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        debug!("Remove key={:?}", request.get_ref().key);
        Err(unimplemented("Remove"))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let key = &request.get_ref().key;
        debug!("Stat key={key:?}");
        // No snapshot can exist yet: Prepare/View/Commit are not implemented.
        Err(not_found(key))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let name = request.get_ref().info.as_ref().map(|i| i.name.as_str());
        debug!("Update name={name:?}");
        Err(unimplemented("Update"))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        debug!("List filters={:?}", request.get_ref().filters);
        // No snapshots exist yet, so there is nothing to stream.
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let key = &request.get_ref().key;
        debug!("Usage key={key:?}");
        Err(not_found(key))
    }

    async fn cleanup(&self, _request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        debug!("Cleanup");
        // Nothing is ever allocated yet, so there is nothing to reclaim.
        Ok(Response::new(()))
    }
}
