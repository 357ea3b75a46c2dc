use serde_json::json;
use tokio::io::AsyncReadExt;

use super::fake::{FakeContainerd, Style};
use super::media_types::*;
use super::*;

const A: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
const B: &str = "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
const NS: &str = "k8s.io";

fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, content).unwrap();
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn images_resolve_by_name_and_id() {
    let fake = FakeContainerd::start().await;
    let client = fake.client();
    let layers = [layer_tar("a", b"1"), layer_tar("b", b"2")];
    let oci = fake.push_image(
        NS,
        "docker.io/library/busybox:latest",
        &layers,
        Style::default(),
    );
    let docker = fake.push_image(
        NS,
        "docker.io/revive/plain:1",
        &layers[..1],
        Style {
            docker: true,
            index: false,
            compression: "gzip",
        },
    );
    let docker_list = fake.push_image(
        "other",
        "docker.io/revive/list:1",
        &[layers[0].clone(), layer_tar("c", b"3")],
        Style {
            docker: true,
            index: true,
            compression: "",
        },
    );

    let image = client
        .image_layers(NS, &ImageRef::Name("busybox".into()))
        .await
        .unwrap();
    assert_eq!(image.name, "docker.io/library/busybox:latest");
    assert_eq!(image.target_digest, oci.target.digest);
    assert_eq!(image.manifest_digest, oci.manifest_digest);
    assert_eq!(image.config_digest, oci.config_digest);
    assert_eq!(image.diff_ids(), oci.diff_ids);
    assert_eq!(image.chain_ids(), chain_ids(&oci.diff_ids));
    let digests: Vec<_> = image.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(digests, oci.layer_digests);
    assert_eq!(
        image.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // By id: the config digest (with or without its prefix) or the target's.
    for id in [
        oci.config_digest.clone(),
        oci.config_digest[7..].to_string(),
        oci.target.digest.clone(),
    ] {
        let found = client.image_layers(NS, &ImageRef::Id(id)).await.unwrap();
        assert_eq!(found, image);
    }
    // A name that is not there falls back to the id.
    let found = client
        .image_layers(
            NS,
            &ImageRef::NameOrId {
                name: "gone:latest".into(),
                id: docker.config_digest.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(found.name, "docker.io/revive/plain:1");
    assert_eq!(
        found.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(found.manifest_digest, found.target_digest);

    // Namespaces are kept apart.
    let err = client
        .image_layers(NS, &ImageRef::Name("docker.io/revive/list:1".into()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the checkpoint's base image docker.io/revive/list:1 is not in containerd \
         (namespace k8s.io): import or pull it, then create the container again"
    );
    let found = client
        .image_layers("other", &ImageRef::Id(docker_list.config_digest.clone()))
        .await
        .unwrap();
    assert_eq!(
        found.layers[1].media_type,
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    for id in [docker_list.config_digest.clone(), "not-an-id".into()] {
        let err = client
            .image_layers(NS, &ImageRef::Id(id))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ContainerdError::ImageNotFound { .. }),
            "{err}"
        );
    }
    let err = client
        .image_layers("bad namespace", &ImageRef::Name("busybox".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerdError::Namespace(_)), "{err}");
}

#[tokio::test]
async fn broken_images_are_clear_errors() {
    let fake = FakeContainerd::start().await;
    let client = fake.client();
    let pushed = fake.push_image(NS, "a:1", &[layer_tar("a", b"1")], Style::default());
    let name = ImageRef::Name("a:1".into());

    // The config is gone.
    let config = fake.reads(&pushed.config_digest);
    assert_eq!(config, 0);
    fake.remove_blob(&pushed.config_digest);
    let err = client.image_layers(NS, &name).await.unwrap_err();
    assert!(matches!(err, ContainerdError::BlobNotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the config of image a:1 {} is not in containerd's content store \
             (namespace k8s.io): pull the image again",
            pushed.config_digest
        )),
        "{text}"
    );

    // A manifest whose content does not match its digest.
    fake.put_blob(&pushed.manifest_digest, b"{\"tampered\": 1}".to_vec());
    let err = client.image_layers(NS, &name).await.unwrap_err();
    assert!(matches!(err, ContainerdError::Invalid { .. }), "{err}");

    // A target claiming to be huge is refused before it is read.
    let huge = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: A.into(),
        size: MAX_JSON_BYTES + 1,
        platform: None,
        annotations: Default::default(),
    };
    fake.add_image(
        NS,
        "huge:1",
        revive_proto::types::Descriptor {
            media_type: huge.media_type.clone(),
            digest: huge.digest.clone(),
            size: huge.size as i64,
            annotations: Default::default(),
        },
    );
    fake.put_blob(A, vec![b' '; (MAX_JSON_BYTES + 1) as usize]);
    let err = client
        .image_layers(NS, &ImageRef::Name("huge:1".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(fake.reads(A), 0);

    // An image of another platform only.
    let other = fake.add_json(
        OCI_INDEX,
        &json!({"manifests": [{
            "mediaType": OCI_MANIFEST, "digest": B, "size": 100,
            "platform": {"os": "linux", "architecture": "mips"},
        }]}),
    );
    fake.add_image(NS, "mips:1", other);
    let err = client
        .image_layers(NS, &ImageRef::Name("mips:1".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerdError::NoPlatform { ref available, .. } if available == "linux/mips"),
        "{err}"
    );

    // An index that contains itself, through a chain of indexes, ends.
    let mut target = fake.add_json(OCI_MANIFEST, &json!({}));
    for _ in 0..MAX_INDEX_DEPTH + 2 {
        target = fake.add_json(
            OCI_INDEX,
            &json!({"manifests": [{
                "mediaType": OCI_INDEX, "digest": target.digest, "size": target.size,
                "platform": {"os": "linux", "architecture": host_arch()},
            }]}),
        );
    }
    fake.add_image(NS, "deep:1", target);
    let err = client
        .image_layers(NS, &ImageRef::Name("deep:1".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nest"), "{err}");
}

#[tokio::test]
async fn blobs_stream_with_their_size() {
    let fake = FakeContainerd::start().await;
    let client = fake.client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = fake.add_blob(&data);
    let mut blob = client.read_blob(NS, &digest).await.unwrap();
    assert_eq!(blob.size, data.len() as u64);
    let mut read = Vec::new();
    blob.reader.read_to_end(&mut read).await.unwrap();
    assert_eq!(read, data);

    let err = client.read_blob(NS, A).await.unwrap_err();
    assert!(matches!(err, ContainerdError::BlobNotFound { .. }), "{err}");
    let err = err.describing_blob("layer 1 of image x");
    assert!(
        err.to_string()
            .starts_with(&format!("layer 1 of image x {A} is not"))
    );
}

#[tokio::test]
async fn an_absent_containerd_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let client = Client::new(&socket);
    let err = client
        .image_layers(NS, &ImageRef::Name("busybox".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerdError::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("is containerd running"), "{text}");
}
