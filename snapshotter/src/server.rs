//! The `containerd.services.snapshots.v1.Snapshots` gRPC service.
//!
//! This layer only translates, for any [`Snapshotter`]: requests into its calls,
//! results into protobuf messages, and [`SnapshotError`]s into gRPC codes in
//! [`status`], the one place that decides them. containerd turns those codes
//! back into its `errdefs` errors, which its unpacker, garbage collector and CRI
//! plugin depend on (e.g. ALREADY_EXISTS from Prepare/Commit means "another
//! client unpacked this layer").

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use log::{debug, error};
use revive_proto::prost_types::Timestamp as ProtoTimestamp;
use revive_proto::snapshots::v1::{
    CleanupRequest, CommitSnapshotRequest, Info as ProtoInfo, Kind as ProtoKind,
    ListSnapshotsRequest, ListSnapshotsResponse, MountsRequest, MountsResponse,
    PrepareSnapshotRequest, PrepareSnapshotResponse, RemoveSnapshotRequest, StatSnapshotRequest,
    StatSnapshotResponse, UpdateSnapshotRequest, UpdateSnapshotResponse, UsageRequest,
    UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse, snapshots_server::Snapshots,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::SnapshotError;
use crate::snapshots::{Info, Kind, Labels, Snapshotter};
use crate::store::Timestamp;

pub use revive_proto::snapshots::v1::snapshots_server::SnapshotsServer;

/// Stream type returned by `List`.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

/// Infos per `List` message, as containerd's own service sends them.
pub const LIST_BATCH: usize = 100;

/// The gRPC service in front of a [`Snapshotter`].
#[derive(Debug)]
pub struct SnapshotService<S> {
    snapshotter: Arc<S>,
}

impl<S> Clone for SnapshotService<S> {
    fn clone(&self) -> Self {
        SnapshotService {
            snapshotter: Arc::clone(&self.snapshotter),
        }
    }
}

impl<S: Snapshotter> SnapshotService<S> {
    /// Serves `snapshotter`.
    pub fn new(snapshotter: S) -> Self {
        SnapshotService {
            snapshotter: Arc::new(snapshotter),
        }
    }

    /// Wraps the service for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }
}

/// The single mapping of snapshot errors to gRPC codes.
pub fn status(err: SnapshotError) -> Status {
    match err {
        SnapshotError::NotFound(m) => Status::not_found(m),
        SnapshotError::AlreadyExists(m) => Status::already_exists(m),
        SnapshotError::FailedPrecondition(m) => Status::failed_precondition(m),
        SnapshotError::InvalidArgument(m) => Status::invalid_argument(m),
        e @ (SnapshotError::Internal(_)
        | SnapshotError::Db(_)
        | SnapshotError::Corrupt { .. }
        | SnapshotError::Io(_)) => {
            error!("{e}");
            Status::internal(e.to_string())
        }
    }
}

fn labels(map: HashMap<String, String>) -> Labels {
    map.into_iter().collect()
}

fn parent(p: String) -> Option<String> {
    Some(p).filter(|p| !p.is_empty())
}

fn timestamp(t: Timestamp) -> ProtoTimestamp {
    ProtoTimestamp {
        seconds: t.seconds,
        // Always below 10^9, so it fits.
        nanos: i32::try_from(t.nanos).unwrap_or(0),
    }
}

fn proto_info(info: Info) -> ProtoInfo {
    let kind = match info.kind {
        Kind::View => ProtoKind::View,
        Kind::Active => ProtoKind::Active,
        Kind::Committed => ProtoKind::Committed,
    };
    ProtoInfo {
        name: info.name,
        parent: info.parent.unwrap_or_default(),
        kind: kind as i32,
        created_at: Some(timestamp(info.created_at)),
        updated_at: Some(timestamp(info.updated_at)),
        labels: info.labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl<S: Snapshotter> Snapshots for SnapshotService<S> {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("Prepare key={:?} parent={:?}", req.key, req.parent);
        let mounts = self
            .snapshotter
            .prepare(req.key, parent(req.parent), labels(req.labels))
            .await
            .map_err(status)?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("View key={:?} parent={:?}", req.key, req.parent);
        let mounts = self
            .snapshotter
            .view(req.key, parent(req.parent), labels(req.labels))
            .await
            .map_err(status)?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let key = request.into_inner().key;
        debug!("Mounts key={key:?}");
        let mounts = self.snapshotter.mounts(key).await.map_err(status)?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        debug!("Commit key={:?} name={:?}", req.key, req.name);
        self.snapshotter
            .commit(req.name, req.key, parent(req.parent), labels(req.labels))
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let key = request.into_inner().key;
        debug!("Remove key={key:?}");
        self.snapshotter.remove(key).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        debug!("Stat key={key:?}");
        let info = self.snapshotter.stat(key).await.map_err(status)?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(proto_info(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let req = request.into_inner();
        let info = req
            .info
            .ok_or_else(|| Status::invalid_argument("update request has no info"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        debug!("Update name={:?} paths={paths:?}", info.name);
        let info = self
            .snapshotter
            .update(info.name, labels(info.labels), paths)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(proto_info(info)),
        }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let filters = request.into_inner().filters;
        debug!("List filters={filters:?}");
        let infos = self.snapshotter.list(filters).await.map_err(status)?;
        let mut batches = Vec::with_capacity(infos.len().div_ceil(LIST_BATCH));
        let mut infos = infos.into_iter().map(proto_info).peekable();
        while infos.peek().is_some() {
            let info = infos.by_ref().take(LIST_BATCH).collect();
            batches.push(Ok(ListSnapshotsResponse { info }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let key = request.into_inner().key;
        debug!("Usage key={key:?}");
        let usage = self.snapshotter.usage(key).await.map_err(status)?;
        Ok(Response::new(UsageResponse {
            size: i64::try_from(usage.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, _request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        debug!("Cleanup");
        self.snapshotter.cleanup().await.map_err(status)?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn error_codes() {
        let code = |e| status(e).code();
        assert_eq!(code(SnapshotError::NotFound("x".into())), Code::NotFound);
        assert_eq!(
            code(SnapshotError::AlreadyExists("x".into())),
            Code::AlreadyExists
        );
        assert_eq!(
            code(SnapshotError::FailedPrecondition("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(SnapshotError::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        let io = SnapshotError::io("failed", "/x", std::io::Error::other("boom"));
        assert_eq!(code(io), Code::Internal);
    }
}
