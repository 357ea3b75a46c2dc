//! `revive image push`: an OCI image archive (a checkpoint image `revive image build`
//! wrote) pushed to a registry through containerd, so that the push uses containerd's own
//! registry client with the node's registry configuration (`hosts.toml`), trust and
//! credentials, as its pulls do.
//!
//! The archive's blobs are written into containerd's content store (content service,
//! streamed in chunks, each blob checked against its digest as it is read) under a lease,
//! so the garbage collector leaves them alone until an image record names them; the image
//! record is created, containerd's transfer service pushes it (image store to registry),
//! and the record and the lease are removed again: a checkpoint holds every memory page of
//! its container, and nothing of it is left in containerd after the push. The lease
//! expires by itself should revive die half-way.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use prost::Message as _;
use revive_checkpoint::oci::{Descriptor, media_types};
use revive_proto::content::v1::content_client::ContentClient;
use revive_proto::content::v1::{InfoRequest, WriteAction, WriteContentRequest};
use revive_proto::images::v1::images_client::ImagesClient;
use revive_proto::images::v1::{CreateImageRequest, DeleteImageRequest, Image, UpdateImageRequest};
use revive_proto::leases::v1::leases_client::LeasesClient;
use revive_proto::transfer::v1::TransferRequest;
use revive_proto::transfer::v1::transfer_client::TransferClient;
use revive_proto::types::Descriptor as ProtoDescriptor;
use revive_proto::types::transfer::{ImageStore, OciRegistry, RegistryResolver, type_url};
use tonic::Code;
use tonic::transport::Channel;

use crate::layout::OciArchive;

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// Where CRI is usually told to read registry hosts (`config_path`).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";
/// The containerd namespace the blobs and the record pass through.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Bytes per content write message.
const CHUNK: usize = 1 << 20;
/// How long the lease keeps blobs if revive dies before removing it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);
/// The longest a push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where and how to reach containerd.
#[derive(Debug, Clone)]
pub struct Containerd {
    pub socket: PathBuf,
    pub namespace: String,
    /// The registry hosts configuration containerd's registry client reads.
    pub hosts_dir: PathBuf,
}

/// Pushes the single image of the OCI image archive `archive` to the registry as
/// `reference`; the pushed target's digest.
pub fn push(archive: &Path, reference: &str, containerd: &Containerd) -> Result<String> {
    crate::write::check_ref(reference)?;
    let oci = OciArchive::open(archive)?;
    let index = oci.index()?;
    let [target] = index.manifests.as_slice() else {
        bail!(
            "{} holds {} images; revive image push takes an archive of one (as revive image \
             build writes it)",
            archive.display(),
            index.manifests.len()
        );
    };
    let blobs = reachable(&oci, target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting an async runtime")?;
    runtime.block_on(async {
        let session = Session::open(containerd).await?;
        let pushed = session.push(&oci, &blobs, target, reference).await;
        let closed = session.close(reference).await;
        pushed.and(closed)?;
        Ok(target.digest.clone())
    })
}

/// Every blob `target` (an index or a manifest) reaches, each once, children first.
fn reachable(oci: &OciArchive, target: &Descriptor) -> Result<Vec<Descriptor>> {
    let mut out: Vec<Descriptor> = Vec::new();
    let mut stack = vec![(target.clone(), 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((desc, depth)) = stack.pop() {
        if depth > 4 {
            bail!("indexes nest deeper than 4 levels");
        }
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        match desc.media_type.as_str() {
            media_types::OCI_INDEX | media_types::DOCKER_MANIFEST_LIST => {
                let index = oci.index_blob(&desc)?;
                stack.extend(index.manifests.into_iter().map(|d| (d, depth + 1)));
            }
            media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST => {
                let manifest = oci.manifest(&desc)?;
                stack.push((manifest.config.clone(), depth + 1));
                stack.extend(manifest.layers.iter().cloned().map(|d| (d, depth + 1)));
            }
            _ => {}
        }
        out.push(desc);
    }
    out.reverse();
    Ok(out)
}

/// A lease in containerd and the calls made under it.
struct Session {
    channel: Channel,
    namespace: String,
    lease: String,
    hosts_dir: PathBuf,
}

impl Session {
    async fn open(containerd: &Containerd) -> Result<Session> {
        let channel = revive_proto::unix_channel(&containerd.socket, Duration::from_secs(10));
        let lease = format!(
            "revive-push-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let expires = rfc3339(SystemTime::now() + LEASE_EXPIRY);
        let session = Session {
            channel,
            namespace: containerd.namespace.clone(),
            lease,
            hosts_dir: containerd.hosts_dir.clone(),
        };
        let request = session.request(revive_proto::leases::v1::CreateRequest {
            id: session.lease.clone(),
            labels: HashMap::from([("containerd.io/gc.expire".to_string(), expires)]),
        })?;
        LeasesClient::new(session.channel.clone())
            .create(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "containerd at {} could not create a lease: {} ({:?}); is containerd \
                     running, and is this its socket (--containerd-socket)?",
                    containerd.socket.display(),
                    status.message(),
                    status.code()
                )
            })?;
        Ok(session)
    }

    /// A request in the session's namespace, under its lease.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(
            "containerd-namespace",
            self.namespace.parse().context("namespace")?,
        );
        metadata.insert("containerd-lease", self.lease.parse().context("lease")?);
        Ok(request)
    }

    async fn push(
        &self,
        oci: &OciArchive,
        blobs: &[Descriptor],
        target: &Descriptor,
        reference: &str,
    ) -> Result<()> {
        for desc in blobs {
            self.write_blob(oci, desc)
                .await
                .with_context(|| format!("writing {} into containerd", desc.digest))?;
        }
        let image = Image {
            name: reference.to_string(),
            target: Some(proto_descriptor(target)),
            ..Default::default()
        };
        let created = ImagesClient::new(self.channel.clone())
            .create(self.request(CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            })?)
            .await;
        match created {
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => {
                ImagesClient::new(self.channel.clone())
                    .update(self.request(UpdateImageRequest {
                        image: Some(image),
                        ..Default::default()
                    })?)
                    .await
                    .map_err(|s| anyhow::anyhow!("updating image {reference}: {}", s.message()))?;
            }
            Err(status) => bail!("creating image {reference}: {}", status.message()),
        }
        let source = ImageStore {
            name: reference.to_string(),
            ..Default::default()
        };
        let destination = OciRegistry {
            reference: reference.to_string(),
            resolver: Some(RegistryResolver {
                host_dir: self.hosts_dir.to_string_lossy().into_owned(),
                ..Default::default()
            }),
        };
        let mut request = self.request(TransferRequest {
            source: Some(prost_types::Any {
                type_url: type_url::<ImageStore>(),
                value: source.encode_to_vec(),
            }),
            destination: Some(prost_types::Any {
                type_url: type_url::<OciRegistry>(),
                value: destination.encode_to_vec(),
            }),
            options: None,
        })?;
        request.set_timeout(PUSH_TIMEOUT);
        TransferClient::new(self.channel.clone())
            .transfer(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "containerd could not push {reference}: {} (its registry configuration \
                     is in {}, one hosts.toml per registry)",
                    status.message(),
                    self.hosts_dir.display()
                )
            })?;
        Ok(())
    }

    /// Streams one blob into the content store, unless it is there already.
    async fn write_blob(&self, oci: &OciArchive, desc: &Descriptor) -> Result<()> {
        let there = ContentClient::new(self.channel.clone())
            .info(self.request(InfoRequest {
                digest: desc.digest.clone(),
            })?)
            .await;
        if there.is_ok() {
            return Ok(());
        }
        let size = desc.size;
        let mut reader = oci.blob(desc)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let reference = format!("revive-push-{}", desc.digest);
        let expected = desc.digest.clone();
        let feeder = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut offset = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let mut filled = 0;
                while filled < buf.len() && offset + (filled as u64) < size {
                    let n = reader.read(&mut buf[filled..])?;
                    if n == 0 {
                        bail!(
                            "the blob ends after {} of {size} bytes",
                            offset + filled as u64
                        );
                    }
                    filled += n;
                }
                let last = offset + filled as u64 >= size;
                if last {
                    // Reading on to the end checks the blob's digest.
                    let mut rest = [0u8; 1];
                    if reader.read(&mut rest)? != 0 {
                        bail!("the blob is longer than its {size} bytes");
                    }
                }
                let message = WriteContentRequest {
                    action: if last {
                        WriteAction::Commit
                    } else {
                        WriteAction::Write
                    } as i32,
                    r#ref: reference.clone(),
                    total: size as i64,
                    expected: if offset == 0 || last {
                        expected.clone()
                    } else {
                        String::new()
                    },
                    offset: offset as i64,
                    data: buf[..filled].to_vec(),
                    labels: HashMap::new(),
                };
                offset += filled as u64;
                if tx.blocking_send(message).is_err() || last {
                    return Ok(());
                }
            }
        });
        let request = self.request(tokio_stream::wrappers::ReceiverStream::new(rx))?;
        let written = async {
            let mut responses = ContentClient::new(self.channel.clone())
                .write(request)
                .await?
                .into_inner();
            while responses.message().await?.is_some() {}
            Ok::<_, tonic::Status>(())
        }
        .await;
        let fed = feeder.await.context("the blob reader stopped")?;
        match written {
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => bail!("{}", status.message()),
            Ok(()) => {}
        }
        fed
    }

    /// Removes the image record and the lease: their blobs go with containerd's next
    /// garbage collection.
    async fn close(&self, reference: &str) -> Result<()> {
        let deleted = ImagesClient::new(self.channel.clone())
            .delete(self.request(DeleteImageRequest {
                name: reference.to_string(),
                sync: false,
                ..Default::default()
            })?)
            .await;
        if let Err(status) = deleted
            && status.code() != Code::NotFound
        {
            bail!(
                "removing the image record {reference}: {}",
                status.message()
            );
        }
        LeasesClient::new(self.channel.clone())
            .delete(self.request(revive_proto::leases::v1::DeleteRequest {
                id: self.lease.clone(),
                sync: false,
            })?)
            .await
            .map_err(|s| anyhow::anyhow!("removing lease {}: {}", self.lease, s.message()))?;
        Ok(())
    }
}

fn proto_descriptor(desc: &Descriptor) -> ProtoDescriptor {
    ProtoDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size as i64,
        annotations: desc
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// `time` as RFC 3339 in UTC, to the second (containerd's `gc.expire` label).
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    revive_checkpoint::utc::Utc::from_unix(secs).rfc3339()
}
