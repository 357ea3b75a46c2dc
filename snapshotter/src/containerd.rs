//! A small client of containerd's own gRPC API (images and content services), with which
//! the snapshotter finds a checkpoint's base image and reads its layers.
//!
//! containerd keeps images as records (name -> target descriptor) in its metadata store and
//! their manifests, configs and layers as blobs in its content store. [`Client::image_layers`]
//! resolves an image to the layers of the host's platform: target (an index or a manifest),
//! the manifest for linux on this machine's architecture, its config and the config's
//! `rootfs.diff_ids`, and computes the layers' chain IDs as containerd does.
//! [`Client::read_blob`] streams a blob.
//!
//! Every request carries the namespace in the `containerd-namespace` header. The connection
//! is made lazily, at the first call, so a snapshotter may start before containerd (which
//! usually waits for its proxy plugins).
//!
//! What containerd returns is trusted no more than a checkpoint: manifests, indexes and
//! configs are read up to [`MAX_JSON_BYTES`], checked against their digests, parsed into
//! typed structures, and every digest is checked to be `sha256:` and 64 hex digits before
//! it is used (chain IDs name directories).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use log::debug;
use revive_proto::content::v1::content_client::ContentClient;
use revive_proto::content::v1::{InfoRequest, ReadContentRequest};
use revive_proto::images::v1::images_client::ImagesClient;
use revive_proto::images::v1::{GetImageRequest, ListImagesRequest};
use revive_proto::types::Descriptor as ProtoDescriptor;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// An image id as a digest (`sha256:<hex>`), whether it was written with the algorithm or
/// as its 64 hex digits alone.
pub fn image_id_digest(id: &str) -> String {
    match id.starts_with("sha256:") {
        true => id.to_string(),
        false => format!("sha256:{id}"),
    }
}

/// The registry host of image name `reference` (`docker.io` for Docker Hub's short names),
/// or None for what is not an image name (an id, a digest).
pub fn registry_of(reference: &str) -> Option<String> {
    if reference.is_empty() || reference.contains(char::is_whitespace) {
        return None;
    }
    let normalised = normalise_name(reference).unwrap_or_else(|| reference.to_string());
    normalised.split_once('/').map(|(host, _)| host.to_string())
}

pub use revive_checkpoint::oci::{
    Compression, Layer, MAX_LAYERS, chain_ids, host_arch, is_sha256_digest, media_types,
    normalise_name, sha256_digest,
};
use revive_checkpoint::oci::{
    Descriptor, Document, choose_manifest, layers_of, parse_config, parse_document,
};

#[cfg(test)]
pub(crate) mod fake;

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The gRPC header that names the containerd namespace of a request.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";
/// Largest manifest, index or config read (containerd's own limit for manifests is 4 MiB).
pub const MAX_JSON_BYTES: u64 = 4 << 20;
/// How deep indexes may nest (an index of indexes of manifests is depth 2).
const MAX_INDEX_DEPTH: usize = 4;
/// How long a unary call (Get, List, Info) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long pulling a base image may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long connecting to containerd's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to containerd failed. The messages say what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// No image record by that name or id.
    #[error(
        "the checkpoint's base image {name} is not in containerd (namespace {namespace}): \
         import or pull it, then create the container again"
    )]
    ImageNotFound { name: String, namespace: String },
    /// A blob the image needs is missing from the content store.
    #[error(
        "{what} {digest} is not in containerd's content store (namespace {namespace}): pull \
         the image again, then create the container again (containerd removes layer blobs \
         after unpacking when its CRI plugin has discard_unpacked_layers = true)"
    )]
    BlobNotFound {
        /// What the blob is, e.g. "layer 2 of docker.io/library/busybox:latest".
        what: String,
        digest: String,
        namespace: String,
    },
    /// containerd's socket cannot be reached.
    #[error(
        "cannot reach containerd at {}: {message} (is containerd running, and is \
         --containerd-socket right?)",
        socket.display()
    )]
    Unavailable { socket: PathBuf, message: String },
    /// A call failed for another reason.
    #[error("containerd {call} failed: {code:?}: {message}")]
    Rpc {
        call: String,
        code: Code,
        message: String,
    },
    /// The image's documents are malformed, unsupported or do not match their digests.
    #[error("image {image}: {reason}")]
    Invalid { image: String, reason: String },
    /// The image has no manifest for this machine.
    #[error("image {image} has no manifest for linux/{arch} (it has: {available})")]
    NoPlatform {
        image: String,
        arch: String,
        available: String,
    },
    /// The namespace cannot be sent (containerd's names are short ASCII identifiers).
    #[error("invalid containerd namespace {0:?}")]
    Namespace(String),
    /// Reading a blob's stream failed.
    #[error("reading {what} {digest} from containerd: {source}")]
    Read {
        what: String,
        digest: String,
        #[source]
        source: io::Error,
    },
}

impl ContainerdError {
    /// Names the blob of a [`ContainerdError::BlobNotFound`] or
    /// [`ContainerdError::Read`] error (e.g. "layer 2 of <image>").
    pub fn describing_blob(self, description: impl Into<String>) -> Self {
        match self {
            ContainerdError::BlobNotFound {
                digest, namespace, ..
            } => ContainerdError::BlobNotFound {
                what: description.into(),
                digest,
                namespace,
            },
            ContainerdError::Read { digest, source, .. } => ContainerdError::Read {
                what: description.into(),
                digest,
                source,
            },
            other => other,
        }
    }
}

pub type Result<T, E = ContainerdError> = std::result::Result<T, E>;

/// How the checkpoint names its base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An image name (`docker.io/library/busybox:latest`, or short: `busybox`).
    Name(String),
    /// An image id: the digest of its config or of its target (manifest or index), with or
    /// without the `sha256:` prefix.
    Id(String),
    /// Both, as a checkpoint's config.dump records them (`rootfsImageName`,
    /// `rootfsImageRef`): the name is tried first, then the id.
    NameOrId { name: String, id: String },
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Name(name) => f.write_str(name),
            ImageRef::Id(id) => f.write_str(id),
            ImageRef::NameOrId { name, id } => write!(f, "{name} ({id})"),
        }
    }
}

/// A base image resolved for this machine's platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    /// The name of containerd's image record.
    pub name: String,
    /// The digest of the image record's target (an index or a manifest).
    pub target_digest: String,
    /// The digest of the manifest chosen for this platform.
    pub manifest_digest: String,
    /// The digest of the image's config (the image id of CRI and Docker).
    pub config_digest: String,
    /// The layers, bottom first, as in the manifest.
    pub layers: Vec<Layer>,
}

impl BaseImage {
    /// The layers' diff IDs, bottom first.
    pub fn diff_ids(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.diff_id.as_str()).collect()
    }

    /// The layers' chain IDs, bottom first.
    pub fn chain_ids(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.chain_id.as_str()).collect()
    }
}

/// A blob being read from containerd's content store.
pub struct Blob {
    /// The blob's size, as the content store reports it.
    pub size: u64,
    /// The blob's bytes. Fails (`InvalidData`) if containerd sends more than `size` bytes
    /// or sends them out of order, (`UnexpectedEof`) if it sends fewer.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("size", &self.size).finish()
    }
}

/// A client of containerd's images and content services on a unix socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    channel: Channel,
}

impl Client {
    /// A client of the containerd listening on `socket`. Connects at the first call (and
    /// again after a failure), so containerd need not be running yet.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        let socket = socket.into();
        let channel = revive_proto::unix_channel(socket.clone(), CONNECT_TIMEOUT);
        Client { socket, channel }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A request in `namespace`.
    fn request<T>(&self, namespace: &str, message: T) -> Result<tonic::Request<T>> {
        let valid = !namespace.is_empty()
            && namespace.len() <= 76
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(ContainerdError::Namespace(namespace.to_string()));
        }
        let mut request = tonic::Request::new(message);
        let value = namespace
            .parse()
            .map_err(|_| ContainerdError::Namespace(namespace.to_string()))?;
        request.metadata_mut().insert(NAMESPACE_HEADER, value);
        Ok(request)
    }

    fn rpc_error(&self, call: impl Into<String>, status: &Status) -> ContainerdError {
        let message = status.message().to_string();
        if status.code() == Code::Unavailable {
            return ContainerdError::Unavailable {
                socket: self.socket.clone(),
                message,
            };
        }
        ContainerdError::Rpc {
            call: call.into(),
            code: status.code(),
            message,
        }
    }

    /// The target descriptor of the image record `name`, or None if there is none.
    async fn get_image(&self, namespace: &str, name: &str) -> Result<Option<ProtoDescriptor>> {
        let mut request = self.request(
            namespace,
            GetImageRequest {
                name: name.to_string(),
            },
        )?;
        request.set_timeout(CALL_TIMEOUT);
        match ImagesClient::new(self.channel.clone()).get(request).await {
            Ok(response) => Ok(response.into_inner().image.and_then(|i| i.target)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.rpc_error(format!("Images.Get {name}"), &status)),
        }
    }

    /// Pulls image `reference` (a name with its registry) into containerd's image store in
    /// `namespace`, for this machine's platform and without unpacking it, through
    /// containerd's transfer service: containerd's own registry client, with the hosts
    /// configuration in `hosts_dir` (`hosts.toml` per registry, as CRI's `config_path`)
    /// and the system's trusted certificates.
    pub async fn pull(&self, namespace: &str, reference: &str, hosts_dir: &Path) -> Result<()> {
        use revive_proto::transfer::v1::TransferRequest;
        use revive_proto::transfer::v1::transfer_client::TransferClient;
        use revive_proto::types::Platform;
        use revive_proto::types::transfer::{ImageStore, OciRegistry, RegistryResolver, type_url};

        let source = OciRegistry {
            reference: reference.to_string(),
            resolver: Some(RegistryResolver {
                host_dir: hosts_dir.to_string_lossy().into_owned(),
                ..Default::default()
            }),
        };
        let destination = ImageStore {
            name: reference.to_string(),
            platforms: vec![Platform {
                os: "linux".into(),
                architecture: host_arch().into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let any = |type_url: String, value: Vec<u8>| prost_types::Any { type_url, value };
        let mut request = self.request(
            namespace,
            TransferRequest {
                source: Some(any(
                    type_url::<OciRegistry>(),
                    prost::Message::encode_to_vec(&source),
                )),
                destination: Some(any(
                    type_url::<ImageStore>(),
                    prost::Message::encode_to_vec(&destination),
                )),
                options: None,
            },
        )?;
        request.set_timeout(PULL_TIMEOUT);
        debug!(
            "pulling {reference} into namespace {namespace} through containerd's transfer service"
        );
        TransferClient::new(self.channel.clone())
            .transfer(request)
            .await
            .map_err(|status| self.rpc_error(format!("Transfer (pull {reference})"), &status))?;
        Ok(())
    }

    /// All image records of `namespace`: (name, target).
    async fn list_images(&self, namespace: &str) -> Result<Vec<(String, ProtoDescriptor)>> {
        let mut request = self.request(namespace, ListImagesRequest::default())?;
        request.set_timeout(CALL_TIMEOUT);
        let images = ImagesClient::new(self.channel.clone())
            .list(request)
            .await
            .map_err(|status| self.rpc_error("Images.List", &status))?
            .into_inner()
            .images;
        Ok(images
            .into_iter()
            .filter_map(|i| i.target.map(|t| (i.name, t)))
            .collect())
    }

    /// The size of blob `digest`.
    pub async fn blob_size(&self, namespace: &str, digest: &str) -> Result<u64> {
        let mut request = self.request(
            namespace,
            InfoRequest {
                digest: digest.to_string(),
            },
        )?;
        request.set_timeout(CALL_TIMEOUT);
        let not_found = || ContainerdError::BlobNotFound {
            what: "blob".into(),
            digest: digest.to_string(),
            namespace: namespace.to_string(),
        };
        let info = match ContentClient::new(self.channel.clone()).info(request).await {
            Ok(response) => response.into_inner().info.ok_or_else(not_found)?,
            Err(status) if status.code() == Code::NotFound => return Err(not_found()),
            Err(status) => return Err(self.rpc_error(format!("Content.Info {digest}"), &status)),
        };
        u64::try_from(info.size).map_err(|_| ContainerdError::Rpc {
            call: format!("Content.Info {digest}"),
            code: Code::Internal,
            message: format!("negative size {}", info.size),
        })
    }

    /// Streams blob `digest` from the content store (Content.Info, then Content.Read).
    /// A missing blob is [`ContainerdError::BlobNotFound`].
    pub async fn read_blob(&self, namespace: &str, digest: &str) -> Result<Blob> {
        let size = self.blob_size(namespace, digest).await?;
        let request = self.request(
            namespace,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        )?;
        let stream = match ContentClient::new(self.channel.clone()).read(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                return Err(ContainerdError::BlobNotFound {
                    what: "blob".into(),
                    digest: digest.to_string(),
                    namespace: namespace.to_string(),
                });
            }
            Err(status) => return Err(self.rpc_error(format!("Content.Read {digest}"), &status)),
        };
        let mut offset: u64 = 0;
        let chunks = stream.map(move |message| {
            let message = message.map_err(|status| {
                io::Error::other(format!("{:?}: {}", status.code(), status.message()))
            })?;
            if u64::try_from(message.offset).ok() != Some(offset) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "containerd sent data at offset {} where {offset} was expected",
                        message.offset
                    ),
                ));
            }
            offset += message.data.len() as u64;
            if offset > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("containerd sent more than the blob's {size} bytes"),
                ));
            }
            Ok(io::Cursor::new(message.data))
        });
        let reader = tokio_util::io::StreamReader::new(chunks);
        Ok(Blob {
            size,
            reader: Box::pin(ExactSize {
                inner: reader,
                left: size,
            }),
        })
    }

    /// Reads a whole JSON document (manifest, index, config) of at most [`MAX_JSON_BYTES`]
    /// and checks it against its descriptor's digest and size.
    async fn read_document(
        &self,
        namespace: &str,
        image: &str,
        what: &str,
        descriptor: &Descriptor,
    ) -> Result<Vec<u8>> {
        let invalid = |reason: String| ContainerdError::Invalid {
            image: image.to_string(),
            reason: format!("{what} {}: {reason}", descriptor.digest),
        };
        if descriptor.size > MAX_JSON_BYTES {
            return Err(invalid(format!(
                "its size ({} bytes) is over the limit of {MAX_JSON_BYTES}",
                descriptor.size
            )));
        }
        let blob = self
            .read_blob(namespace, &descriptor.digest)
            .await
            .map_err(|e| e.describing_blob(format!("the {what} of image {image}")))?;
        if blob.size != descriptor.size {
            return Err(invalid(format!(
                "the content store has {} bytes, the descriptor says {}",
                blob.size, descriptor.size
            )));
        }
        let mut data = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
        blob.reader
            .take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut data)
            .await
            .map_err(|source| ContainerdError::Read {
                what: format!("the {what} of image {image}"),
                digest: descriptor.digest.clone(),
                source,
            })?;
        let actual = sha256_digest(&data);
        if actual != descriptor.digest {
            return Err(invalid(format!("its content has the digest {actual}")));
        }
        Ok(data)
    }

    /// Finds the image record named by `reference` and resolves it to its layers for this
    /// machine's platform (linux, [`host_arch`]).
    pub async fn image_layers(&self, namespace: &str, reference: &ImageRef) -> Result<BaseImage> {
        let not_found = || ContainerdError::ImageNotFound {
            name: reference.to_string(),
            namespace: namespace.to_string(),
        };
        let found = match reference {
            ImageRef::Name(name) => self.find_by_name(namespace, name).await?,
            ImageRef::Id(id) => self.find_by_id(namespace, id).await?,
            ImageRef::NameOrId { name, id } => match self.find_by_name(namespace, name).await? {
                Some(found) => Some(found),
                None => self.find_by_id(namespace, id).await?,
            },
        };
        let (name, target) = found.ok_or_else(not_found)?;
        self.resolve(namespace, &name, &target).await
    }

    /// The image named `name`, or its normalised form.
    async fn find_by_name(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(String, ProtoDescriptor)>> {
        let mut names = vec![name.to_string()];
        names.extend(normalise_name(name));
        for name in names {
            if let Some(target) = self.get_image(namespace, &name).await? {
                return Ok(Some((name, target)));
            }
        }
        Ok(None)
    }

    /// The image whose target or config digest is `id`.
    async fn find_by_id(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<(String, ProtoDescriptor)>> {
        let digest = image_id_digest(id);
        if !is_sha256_digest(&digest) {
            return Ok(None);
        }
        // containerd's CRI plugin names each image by its id too.
        if let Some(target) = self.get_image(namespace, &digest).await? {
            return Ok(Some((digest, target)));
        }
        let images = self.list_images(namespace).await?;
        if let Some((name, target)) = images.iter().find(|(_, t)| t.digest == digest) {
            return Ok(Some((name.clone(), target.clone())));
        }
        for (name, target) in images {
            match self.resolve(namespace, &name, &target).await {
                Ok(image) if image.config_digest == digest => return Ok(Some((name, target))),
                Ok(_) => {}
                // Images of other platforms, or whose content is gone, are not the one.
                Err(e) => debug!("looking for image {digest}: skipping {name}: {e}"),
            }
        }
        Ok(None)
    }

    /// Resolves the image `name` whose target is `target`.
    async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        target: &ProtoDescriptor,
    ) -> Result<BaseImage> {
        let invalid = |reason: String| ContainerdError::Invalid {
            image: name.to_string(),
            reason,
        };
        let mut descriptor = descriptor_of(target).map_err(invalid)?;
        let target_digest = descriptor.digest.clone();
        let arch = host_arch();
        for _ in 0..=MAX_INDEX_DEPTH {
            let data = self
                .read_document(namespace, name, "manifest", &descriptor)
                .await?;
            match parse_document(&descriptor.media_type, &data)
                .map_err(|r| invalid(format!("the document {}: {r}", descriptor.digest)))?
            {
                Document::Index(index) => {
                    descriptor = choose_manifest(&index, "linux", arch).map_err(|e| {
                        ContainerdError::NoPlatform {
                            image: name.to_string(),
                            arch: arch.to_string(),
                            available: e.available_list(),
                        }
                    })?;
                }
                Document::Manifest(manifest) => {
                    let config_data = self
                        .read_document(namespace, name, "config", &manifest.config)
                        .await?;
                    let config = parse_config(&config_data).map_err(|r| {
                        invalid(format!("the config {}: {r}", manifest.config.digest))
                    })?;
                    let other = |value: &Option<String>, ours: &str| {
                        value.as_deref().is_some_and(|v| !v.is_empty() && v != ours)
                    };
                    if other(&config.os, "linux") || other(&config.architecture, arch) {
                        return Err(ContainerdError::NoPlatform {
                            image: name.to_string(),
                            arch: arch.to_string(),
                            available: format!(
                                "{}/{}",
                                config.os.as_deref().unwrap_or("?"),
                                config.architecture.as_deref().unwrap_or("?")
                            ),
                        });
                    }
                    let layers =
                        layers_of(&manifest, &config).map_err(|e| invalid(e.to_string()))?;
                    return Ok(BaseImage {
                        name: name.to_string(),
                        target_digest,
                        manifest_digest: descriptor.digest,
                        config_digest: manifest.config.digest,
                        layers,
                    });
                }
            }
        }
        Err(invalid(format!(
            "indexes nest more than {MAX_INDEX_DEPTH} deep"
        )))
    }
}

/// Makes a reader fail with `UnexpectedEof` if it ends before `left` bytes.
struct ExactSize<R> {
    inner: R,
    left: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactSize<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &result {
            let n = (buf.filled().len() - before) as u64;
            if n == 0 && self.left > 0 {
                let left = self.left;
                return std::task::Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ended {left} bytes before the blob's end"),
                )));
            }
            self.left = self.left.saturating_sub(n);
        }
        result
    }
}

/// A containerd descriptor (an image record's target), checked.
fn descriptor_of(proto: &ProtoDescriptor) -> std::result::Result<Descriptor, String> {
    let descriptor = Descriptor {
        media_type: proto.media_type.clone(),
        digest: proto.digest.clone(),
        size: u64::try_from(proto.size)
            .map_err(|_| format!("the target's size {} is negative", proto.size))?,
        platform: None,
        annotations: Default::default(),
    };
    descriptor.check().map_err(|e| e.to_string())?;
    Ok(descriptor)
}

#[cfg(test)]
mod tests;
