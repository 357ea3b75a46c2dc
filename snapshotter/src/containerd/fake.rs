//! An in-process stand-in for containerd in tests: Images.Get/List and Content.Info/Read
//! served from memory on a unix socket in a temporary directory, plus helpers that build
//! images (layers, config, manifest, index) into it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use revive_proto::content::v1::content_server::{Content, ContentServer};
use revive_proto::content::v1::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse, ListContentRequest,
    ListContentResponse, ListStatusesRequest, ListStatusesResponse, ReadContentRequest,
    ReadContentResponse, StatusRequest, StatusResponse, UpdateRequest, UpdateResponse,
    WriteContentRequest, WriteContentResponse,
};
use revive_proto::images::v1::images_server::{Images, ImagesServer};
use revive_proto::images::v1::{
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    Image, ListImagesRequest, ListImagesResponse, UpdateImageRequest, UpdateImageResponse,
};
use revive_proto::types::Descriptor;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::{Client, NAMESPACE_HEADER, media_types, sha256_digest};

/// Size of the chunks Content.Read sends.
const CHUNK: usize = 16 * 1024;

#[derive(Default)]
struct State {
    /// (namespace, name) -> target.
    images: HashMap<(String, String), Descriptor>,
    blobs: HashMap<String, Vec<u8>>,
    /// Content.Read calls per digest.
    reads: HashMap<String, usize>,
}

#[derive(Clone, Default)]
struct Service(Arc<Mutex<State>>);

fn namespace<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .metadata()
        .get(NAMESPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Status::failed_precondition("namespace is required"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Images for Service {
    async fn get(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let ns = namespace(&request)?;
        let name = request.into_inner().name;
        let state = self.0.lock().unwrap();
        let target = state
            .images
            .get(&(ns, name.clone()))
            .ok_or_else(|| Status::not_found(format!("image \"{name}\": not found")))?;
        Ok(Response::new(GetImageResponse {
            image: Some(Image {
                name,
                target: Some(target.clone()),
                ..Default::default()
            }),
        }))
    }

    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let ns = namespace(&request)?;
        let state = self.0.lock().unwrap();
        let mut images: Vec<Image> = state
            .images
            .iter()
            .filter(|((n, _), _)| *n == ns)
            .map(|((_, name), target)| Image {
                name: name.clone(),
                target: Some(target.clone()),
                ..Default::default()
            })
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn create(
        &self,
        _: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update(
        &self,
        _: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete(&self, _: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl Content for Service {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        namespace(&request)?;
        let digest = request.into_inner().digest;
        let state = self.0.lock().unwrap();
        let blob = state
            .blobs
            .get(&digest)
            .ok_or_else(|| Status::not_found(format!("content digest {digest}: not found")))?;
        Ok(Response::new(InfoResponse {
            info: Some(Info {
                digest,
                size: blob.len() as i64,
                ..Default::default()
            }),
        }))
    }

    async fn update(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type ListStream = BoxStream<ListContentResponse>;

    async fn list(
        &self,
        _: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete(&self, _: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type ReadStream = BoxStream<ReadContentResponse>;

    async fn read(
        &self,
        request: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        namespace(&request)?;
        let digest = request.into_inner().digest;
        let mut state = self.0.lock().unwrap();
        let blob = state
            .blobs
            .get(&digest)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("content digest {digest}: not found")))?;
        *state.reads.entry(digest).or_default() += 1;
        let chunks: Vec<Result<ReadContentResponse, Status>> = blob
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, data)| {
                Ok(ReadContentResponse {
                    offset: (i * CHUNK) as i64,
                    data: data.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_statuses(
        &self,
        _: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WriteStream = BoxStream<WriteContentResponse>;

    async fn write(
        &self,
        _: Request<tonic::Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn abort(&self, _: Request<AbortRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A fake containerd serving on a socket until dropped.
pub(crate) struct FakeContainerd {
    service: Service,
    _dir: tempfile::TempDir,
    pub(crate) socket: PathBuf,
    _stop: oneshot::Sender<()>,
}

/// How to build an image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// Docker media types, else OCI.
    pub(crate) docker: bool,
    /// Put the manifest in an index (with manifests of other platforms around it).
    pub(crate) index: bool,
    /// Layer compression: "gzip", "zstd" or "" (none).
    pub(crate) compression: &'static str,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            docker: false,
            index: true,
            compression: "gzip",
        }
    }
}

/// What [`FakeContainerd::push_image`] stored.
#[derive(Clone, Debug)]
pub(crate) struct Pushed {
    pub(crate) target: Descriptor,
    pub(crate) manifest_digest: String,
    pub(crate) config_digest: String,
    pub(crate) layer_digests: Vec<String>,
    pub(crate) diff_ids: Vec<String>,
}

impl FakeContainerd {
    /// Starts serving. Must be called within a tokio runtime.
    pub(crate) async fn start() -> FakeContainerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let service = Service::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(ImagesServer::new(service.clone()))
            .add_service(ContentServer::new(service.clone()))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        tokio::spawn(server);
        FakeContainerd {
            service,
            _dir: dir,
            socket,
            _stop: stop,
        }
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Stores a blob; returns its digest.
    pub(crate) fn add_blob(&self, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let mut state = self.service.0.lock().unwrap();
        state.blobs.insert(digest.clone(), data.to_vec());
        digest
    }

    /// Stores `data` under `digest`, which need not be its digest.
    pub(crate) fn put_blob(&self, digest: &str, data: Vec<u8>) {
        let mut state = self.service.0.lock().unwrap();
        state.blobs.insert(digest.to_string(), data);
    }

    pub(crate) fn remove_blob(&self, digest: &str) {
        self.service.0.lock().unwrap().blobs.remove(digest);
    }

    /// How many times Content.Read was called for `digest`.
    pub(crate) fn reads(&self, digest: &str) -> usize {
        let state = self.service.0.lock().unwrap();
        state.reads.get(digest).copied().unwrap_or(0)
    }

    /// Stores a JSON document; returns its descriptor.
    pub(crate) fn add_json(&self, media_type: &str, value: &serde_json::Value) -> Descriptor {
        let data = serde_json::to_vec(value).unwrap();
        Descriptor {
            media_type: media_type.to_string(),
            digest: self.add_blob(&data),
            size: data.len() as i64,
            annotations: HashMap::new(),
        }
    }

    pub(crate) fn add_image(&self, namespace: &str, name: &str, target: Descriptor) {
        let mut state = self.service.0.lock().unwrap();
        state
            .images
            .insert((namespace.to_string(), name.to_string()), target);
    }

    /// Builds an image of the uncompressed tar `layers` (bottom first) for this machine and
    /// stores it as `name` in `namespace`.
    pub(crate) fn push_image(
        &self,
        namespace: &str,
        name: &str,
        layers: &[Vec<u8>],
        style: Style,
    ) -> Pushed {
        let (layer_type, config_type, manifest_type, index_type) = if style.docker {
            (
                format!(
                    "application/vnd.docker.image.rootfs.diff.tar{}",
                    match style.compression {
                        "" => "",
                        "gzip" => ".gzip",
                        other => panic!("docker has no {other} layers"),
                    }
                ),
                media_types::DOCKER_CONFIG,
                media_types::DOCKER_MANIFEST,
                media_types::DOCKER_MANIFEST_LIST,
            )
        } else {
            (
                match style.compression {
                    "" => "application/vnd.oci.image.layer.v1.tar".to_string(),
                    other => format!("application/vnd.oci.image.layer.v1.tar+{other}"),
                },
                media_types::OCI_CONFIG,
                media_types::OCI_MANIFEST,
                media_types::OCI_INDEX,
            )
        };
        let mut diff_ids = Vec::new();
        let mut layer_descriptors = Vec::new();
        let mut layer_digests = Vec::new();
        for tar in layers {
            diff_ids.push(sha256_digest(tar));
            let blob = compress(tar, style.compression);
            let digest = self.add_blob(&blob);
            layer_descriptors.push(json!({
                "mediaType": layer_type, "digest": digest, "size": blob.len()
            }));
            layer_digests.push(digest);
        }
        let arch = super::host_arch();
        let config = self.add_json(
            config_type,
            &json!({
                "architecture": arch, "os": "linux",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }),
        );
        let manifest = self.add_json(
            manifest_type,
            &json!({
                "schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config.digest, "size": config.size},
                "layers": layer_descriptors,
            }),
        );
        let target = if style.index {
            // Other platforms' manifests are absent from the content store, as after a
            // pull for one platform.
            let other = "sha256:".to_string() + &"0".repeat(64);
            let other_arch = if arch == "arm64" { "amd64" } else { "arm64" };
            self.add_json(
                index_type,
                &json!({
                    "schemaVersion": 2, "mediaType": index_type,
                    "manifests": [
                        {"mediaType": manifest_type, "digest": other, "size": 10,
                         "platform": {"os": "linux", "architecture": other_arch}},
                        {"mediaType": manifest_type, "digest": manifest.digest,
                         "size": manifest.size,
                         "platform": {"os": "linux", "architecture": arch}},
                        {"mediaType": manifest_type, "digest": other, "size": 10,
                         "platform": {"os": "unknown", "architecture": "unknown"}},
                    ],
                }),
            )
        } else {
            manifest.clone()
        };
        self.add_image(namespace, name, target.clone());
        Pushed {
            target,
            manifest_digest: manifest.digest,
            config_digest: config.digest,
            layer_digests,
            diff_ids,
        }
    }
}

/// `data` compressed with "gzip", "zstd" or "" (not at all).
pub(crate) fn compress(data: &[u8], compression: &str) -> Vec<u8> {
    match compression {
        "" => data.to_vec(),
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
        other => panic!("unknown compression {other}"),
    }
}
