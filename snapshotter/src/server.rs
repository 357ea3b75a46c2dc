//! The `containerd.services.snapshots.v1.Snapshots` gRPC service.
//!
//! This layer only translates: requests into calls on [`Overlay`] (run on
//! tokio's blocking pool, since they do filesystem work and redb
//! transactions), results into protobuf messages, and [`SnapshotError`]s
//! into gRPC codes in [`status`], the one place that decides them.
//! containerd turns those codes back into its `errdefs` errors, which its
//! unpacker, garbage collector and CRI plugin depend on (e.g. ALREADY_EXISTS
//! from Prepare/Commit means "another client unpacked this layer").

use std::collections::HashMap;
use std::path::Path;
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

use crate::checkpoint::BaseSource;
use crate::error::SnapshotError;
use crate::filter::Filter;
use crate::overlay::Overlay;
use crate::store::{Info, Kind, Labels, Timestamp};

pub use revive_proto::snapshots::v1::snapshots_server::SnapshotsServer;

/// Stream type returned by `List`.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

/// Infos per `List` message, as containerd's own service sends them.
pub const LIST_BATCH: usize = 100;

/// State shared by all requests.
#[derive(Debug, Clone)]
pub struct SnapshotService {
    overlay: Arc<Overlay>,
    /// Where checkpoint layers find their base images; none: checkpoint images are refused.
    bases: Option<Arc<dyn BaseSource>>,
    /// Held shared from finding a base image to recording the rebuild that uses it, and
    /// exclusively while unused base layers are removed.
    rebuilds: Arc<tokio::sync::RwLock<()>>,
}

impl SnapshotService {
    /// Opens the snapshot state under `root` (which must exist).
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Ok(SnapshotService {
            overlay: Arc::new(Overlay::open(root)?),
            bases: None,
            rebuilds: Arc::new(tokio::sync::RwLock::new(())),
        })
    }

    /// Restores containers created from checkpoint images, finding their base images in
    /// `bases`.
    pub fn with_bases(mut self, bases: Arc<dyn BaseSource>) -> Self {
        self.bases = Some(bases);
        self
    }

    /// Before a snapshot is made on `parent`: if `parent` is a checkpoint image's layer not
    /// rebuilt yet, finds its base image and rebuilds its root filesystem (see
    /// [`crate::checkpoint`]). A failure here fails the Prepare or View, leaving nothing.
    async fn rebuild_if_checkpoint(&self, parent: &str) -> Result<(), Status> {
        let name = parent.to_string();
        let Some((layer, None)) = self.run(move |o| o.checkpoint_layer(&name)).await? else {
            return Ok(());
        };
        let Some(bases) = &self.bases else {
            return Err(Status::failed_precondition(format!(
                "snapshot {parent:?} is a checkpoint image's layer, and this snapshotter was \
                 started without access to containerd, so it cannot find the checkpoint's base \
                 image"
            )));
        };
        let archive = layer.archive();
        let config =
            tokio::task::spawn_blocking(move || revive_checkpoint::archive::read_config(&archive))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| {
                    Status::invalid_argument(format!("{e}; refusing to restore from it"))
                })?;
        let refs = config.base_image_refs();
        if refs.is_empty() {
            return Err(Status::invalid_argument(format!(
                "checkpoint image: {} names no base image (rootfsImageName, rootfsImage, \
                 rootfsImageRef are empty); it cannot be restored",
                revive_checkpoint::archive::CONFIG_DUMP
            )));
        }
        let base = bases.base(&layer.namespace, &refs).await.map_err(status)?;
        self.run(move |o| o.rebuild(&layer, &base).map(|_| ()))
            .await
    }

    /// Wraps the service for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }

    /// Runs `f` on the blocking pool and maps its error to a status.
    async fn run<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Overlay) -> Result<T, SnapshotError> + Send + 'static,
    {
        let overlay = Arc::clone(&self.overlay);
        match tokio::task::spawn_blocking(move || f(&overlay)).await {
            Ok(result) => result.map_err(status),
            Err(e) => {
                error!("snapshot operation failed: {e}");
                Err(Status::internal(format!("snapshot operation failed: {e}")))
            }
        }
    }
}

/// The single mapping of snapshot errors to gRPC codes.
pub fn status(err: SnapshotError) -> Status {
    match err {
        SnapshotError::NotFound(m) => Status::not_found(m),
        SnapshotError::AlreadyExists(m) => Status::already_exists(m),
        SnapshotError::FailedPrecondition(m) => Status::failed_precondition(m),
        SnapshotError::InvalidArgument(m) => Status::invalid_argument(m),
        e @ (SnapshotError::Db(_) | SnapshotError::Corrupt { .. } | SnapshotError::Io { .. }) => {
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
impl Snapshots for SnapshotService {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("Prepare key={:?} parent={:?}", req.key, req.parent);
        if !req.parent.is_empty() {
            self.rebuild_if_checkpoint(&req.parent).await?;
        }
        let mounts = self
            .run(move |o| {
                o.create(
                    Kind::Active,
                    &req.key,
                    parent(req.parent).as_deref(),
                    labels(req.labels),
                )
            })
            .await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let req = request.into_inner();
        debug!("View key={:?} parent={:?}", req.key, req.parent);
        if !req.parent.is_empty() {
            self.rebuild_if_checkpoint(&req.parent).await?;
        }
        let mounts = self
            .run(move |o| {
                o.create(
                    Kind::View,
                    &req.key,
                    parent(req.parent).as_deref(),
                    labels(req.labels),
                )
            })
            .await?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let key = request.into_inner().key;
        debug!("Mounts key={key:?}");
        let mounts = self.run(move |o| o.mounts(&key)).await?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        debug!("Commit key={:?} name={:?}", req.key, req.name);
        self.run(move |o| {
            o.commit(
                &req.name,
                &req.key,
                parent(req.parent).as_deref(),
                labels(req.labels),
            )
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let key = request.into_inner().key;
        debug!("Remove key={key:?}");
        self.run(move |o| o.remove(&key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        debug!("Stat key={key:?}");
        let info = self.run(move |o| o.stat(&key)).await?;
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
            .run(move |o| o.update(&info.name, &labels(info.labels), &paths))
            .await?;
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
        let filter = Filter::parse_all(&filters).map_err(status)?;
        let infos = self.run(move |o| o.list(&filter)).await?;
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
        let usage = self.run(move |o| o.usage(&key)).await?;
        Ok(Response::new(UsageResponse {
            size: i64::try_from(usage.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, _request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        debug!("Cleanup");
        self.run(|o| o.cleanup().map(drop)).await?;
        if let Some(bases) = self.bases.clone() {
            let _removing = self.rebuilds.write().await;
            let in_use = self.run(|o| o.bases_in_use()).await?;
            let removed = tokio::task::spawn_blocking(move || bases.remove_unused(&in_use))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(status)?;
            if !removed.is_empty() {
                log::info!("cleanup: removed {} unused base layers", removed.len());
            }
        }
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
