use serde_json::json;
use tokio::io::AsyncReadExt;

use super::fake::{FakeContainerd, Style};
use super::media_types::*;
use super::*;
use crate::oci::*;

const A: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
const B: &str = "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
const C: &str = "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6";
const NS: &str = "k8s.io";

#[test]
fn chain_ids_follow_the_spec() {
    assert!(chain_ids::<&str>(&[]).is_empty());
    // A single layer's chain ID is its diff ID.
    assert_eq!(chain_ids(&[A]), [A]);
    // Computed with sha256sum over "<chain> <diff>".
    assert_eq!(
        chain_ids(&[A, B, C]),
        [
            A,
            "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676",
            "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106",
        ]
    );
}

#[test]
fn digests_are_checked() {
    assert!(is_sha256_digest(A));
    for bad in [
        "",
        "sha256:",
        &A[7..],
        &A[..70],
        "sha512:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
        "sha256:CA978112CA1BBDCAFAC231B39A23DC4DA786EFF8147C4E72B9807785AFEE48BB",
        "sha256:../../../../../../../../../../../../../../../../../../../etc/passwd",
    ] {
        assert!(!is_sha256_digest(bad), "{bad}");
    }
}

#[test]
fn names_are_normalised_like_docker() {
    let cases = [
        ("busybox", Some("docker.io/library/busybox:latest")),
        ("busybox:1.36", Some("docker.io/library/busybox:1.36")),
        ("revive/busybox", Some("docker.io/revive/busybox:latest")),
        (
            "docker.io/revive/busybox",
            Some("docker.io/revive/busybox:latest"),
        ),
        (
            "docker.io/busybox",
            Some("docker.io/library/busybox:latest"),
        ),
        ("quay.io/a/b", Some("quay.io/a/b:latest")),
        ("localhost/a", Some("localhost/a:latest")),
        ("localhost:5000/a:t", None),
        ("registry:5000/a", Some("registry:5000/a:latest")),
        (
            &format!("busybox@{A}"),
            Some(&format!("docker.io/library/busybox@{A}")),
        ),
        ("docker.io/revive/busybox:latest", None),
        ("", None),
        ("a b", None),
    ];
    for (name, want) in cases {
        assert_eq!(normalise_name(name).as_deref(), want, "{name}");
    }
}

#[test]
fn layer_compression_by_media_type() {
    use Compression::*;
    for (media_type, want) in [
        ("application/vnd.oci.image.layer.v1.tar", Some(None)),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Gzip),
        ),
        ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(Gzip),
        ),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
        ("application/vnd.oci.image.layer.v1.tarx", Option::None),
        ("application/octet-stream", Option::None),
        ("", Option::None),
    ] {
        assert_eq!(
            Compression::of_media_type(media_type).ok(),
            want,
            "{media_type}"
        );
    }
}

fn descriptor(media_type: &str, digest: &str, platform: Option<(&str, &str)>) -> serde_json::Value {
    let mut d = json!({"mediaType": media_type, "digest": digest, "size": 100});
    if let Some((os, arch)) = platform {
        d["platform"] = json!({"os": os, "architecture": arch});
    }
    d
}

fn bytes(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn manifests_and_indexes_of_both_kinds_parse() {
    for (index_type, manifest_type, layer_type, config_type) in [
        (
            OCI_INDEX,
            OCI_MANIFEST,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            OCI_CONFIG,
        ),
        (
            DOCKER_MANIFEST_LIST,
            DOCKER_MANIFEST,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            DOCKER_CONFIG,
        ),
    ] {
        let index = bytes(json!({
            "schemaVersion": 2, "mediaType": index_type,
            "manifests": [
                descriptor(manifest_type, A, Some(("linux", "amd64"))),
                descriptor(manifest_type, B, Some(("linux", "arm64"))),
            ],
        }));
        for media_type in [index_type, ""] {
            let Document::Index(parsed) = parse_document(media_type, &index).unwrap() else {
                panic!("not an index")
            };
            assert_eq!(
                choose_manifest(&parsed, "linux", "arm64").unwrap().digest,
                B
            );
            assert_eq!(
                choose_manifest(&parsed, "linux", "amd64").unwrap().digest,
                A
            );
            let err = choose_manifest(&parsed, "linux", "s390x").unwrap_err();
            assert_eq!(err, "linux/amd64, linux/arm64");
        }
        let manifest = bytes(json!({
            "schemaVersion": 2, "mediaType": manifest_type,
            "config": descriptor(config_type, C, None),
            "layers": [descriptor(layer_type, A, None), descriptor(layer_type, B, None)],
        }));
        for media_type in [manifest_type, ""] {
            let Document::Manifest(parsed) = parse_document(media_type, &manifest).unwrap() else {
                panic!("not a manifest")
            };
            assert_eq!(parsed.config.digest, C);
            let config = parse_config(&bytes(json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [B, C]},
            })))
            .unwrap();
            let layers = layers_of(&parsed, &config).unwrap();
            assert_eq!(layers.len(), 2);
            assert_eq!(
                (layers[0].digest.as_str(), layers[0].diff_id.as_str()),
                (A, B)
            );
            assert_eq!(layers[0].chain_id, B);
            assert_eq!(layers[1].chain_id, chain_ids(&[B, C])[1]);
            assert_eq!(layers[1].compression(), Ok(Compression::Gzip));
            assert_eq!(layers[1].chain_id_hex().len(), 64);
        }
    }
    // An index without a mediaType field but with `manifests`, a manifest without either.
    let bare_index = bytes(json!({"manifests": [descriptor(OCI_MANIFEST, A, None)]}));
    let Document::Index(index) = parse_document("", &bare_index).unwrap() else {
        panic!("not an index")
    };
    // The only manifest that names no platform is taken.
    assert_eq!(choose_manifest(&index, "linux", "amd64").unwrap().digest, A);
    let bare_manifest = bytes(json!({"config": descriptor(OCI_CONFIG, A, None), "layers": []}));
    assert!(matches!(
        parse_document("", &bare_manifest),
        Ok(Document::Manifest(_))
    ));
}

#[test]
fn platform_choice_prefers_the_plain_variant() {
    let index: Index = serde_json::from_value(json!({"manifests": [
        {"mediaType": OCI_MANIFEST, "digest": A, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v9"}},
        {"mediaType": OCI_MANIFEST, "digest": B, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": C, "size": 1,
         "platform": {"os": "windows", "architecture": "amd64"}},
        // An attestation manifest, as buildkit writes.
        {"mediaType": OCI_MANIFEST, "digest": C, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
        // Not a manifest.
        {"mediaType": "application/vnd.in-toto+json", "digest": C, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
    ]}))
    .unwrap();
    assert_eq!(choose_manifest(&index, "linux", "arm64").unwrap().digest, B);
    let err = choose_manifest(&index, "linux", "amd64").unwrap_err();
    assert!(
        err.contains("linux/arm64/v8") && err.contains("windows/amd64"),
        "{err}"
    );
    let empty: Index = serde_json::from_value(json!({"manifests": []})).unwrap();
    assert_eq!(
        choose_manifest(&empty, "linux", "amd64").unwrap_err(),
        "no manifests"
    );
}

#[test]
fn hostile_documents_are_errors() {
    let layer = "application/vnd.oci.image.layer.v1.tar+gzip";
    let many_layers: Vec<_> = (0..MAX_LAYERS + 1)
        .map(|_| descriptor(layer, A, None))
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, b"not json".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, b"null".to_vec()),
        (OCI_MANIFEST, bytes(json!({"layers": []}))),
        (
            OCI_MANIFEST,
            bytes(json!({"config": descriptor(OCI_CONFIG, A, None)})),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": descriptor(OCI_CONFIG, A, None), "layers": {}})),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": {"digest": A, "size": -1}, "layers": []})),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": {"digest": A, "size": "1"}, "layers": []})),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": {"digest": 5, "size": 1}, "layers": []})),
        ),
        (
            OCI_MANIFEST,
            bytes(
                json!({"config": descriptor(OCI_CONFIG, "sha256:../../x", None),
                         "layers": []}),
            ),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": descriptor(OCI_CONFIG, A, None),
                         "layers": [descriptor(layer, "md5:abc", None)]})),
        ),
        (
            OCI_MANIFEST,
            bytes(json!({"config": descriptor(OCI_CONFIG, A, None), "layers": many_layers})),
        ),
        (
            OCI_MANIFEST,
            bytes(
                json!({"mediaType": OCI_INDEX, "config": descriptor(OCI_CONFIG, A, None),
                         "layers": []}),
            ),
        ),
        (OCI_INDEX, bytes(json!({"manifests": "x"}))),
        (OCI_INDEX, bytes(json!({"manifests": [{"digest": A}]}))),
        (
            OCI_INDEX,
            bytes(json!({"manifests": [descriptor(OCI_MANIFEST, "x", None)]})),
        ),
        (
            OCI_INDEX,
            bytes(json!({"mediaType": OCI_MANIFEST, "manifests": []})),
        ),
        (
            OCI_INDEX,
            bytes(json!({"manifests": [{"digest": A, "size": 1, "platform": 7}]})),
        ),
        (DOCKER_SCHEMA1_SIGNED, bytes(json!({"schemaVersion": 1}))),
        ("application/vnd.example+json", bytes(json!({}))),
        ("", bytes(json!({"mediaType": "text/plain"}))),
        ("", bytes(json!({"mediaType": 5}))),
        // Deeply nested JSON: serde_json's recursion limit turns it into an error.
        (
            OCI_MANIFEST,
            [b"[".repeat(100_000), b"]".repeat(100_000)].concat(),
        ),
    ];
    for (media_type, data) in cases {
        let result = std::panic::catch_unwind(|| parse_document(media_type, &data));
        let err = result
            .expect("parsing panicked")
            .expect_err(&String::from_utf8_lossy(&data[..data.len().min(200)]));
        assert!(!err.is_empty());
    }
    for config in [
        json!({}),
        json!({"rootfs": {}}),
        json!({"rootfs": {"diff_ids": "x"}}),
        json!({"rootfs": {"diff_ids": [1]}}),
        json!({"rootfs": {"diff_ids": ["sha256:xyz"]}}),
        json!({"rootfs": {"type": "layers", "diff_ids": [A, "sha256:.."]}}),
        json!({"rootfs": {"type": "tar", "diff_ids": []}}),
        json!({"rootfs": {"type": "layers", "diff_ids": vec![A; MAX_LAYERS + 1]}}),
        json!({"os": 1, "rootfs": {"diff_ids": []}}),
    ] {
        assert!(parse_config(&bytes(config.clone())).is_err(), "{config}");
    }
    // A layer count that disagrees with the diff IDs, and an unknown layer type.
    let manifest: Manifest = serde_json::from_value(json!({
        "config": descriptor(OCI_CONFIG, A, None),
        "layers": [descriptor(layer, A, None)],
    }))
    .unwrap();
    let config = parse_config(&bytes(json!({"rootfs": {"diff_ids": [A, B]}}))).unwrap();
    assert!(
        layers_of(&manifest, &config)
            .unwrap_err()
            .contains("1 layers")
    );
    let manifest: Manifest = serde_json::from_value(json!({
        "config": descriptor(OCI_CONFIG, A, None),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+lz4", A, None)],
    }))
    .unwrap();
    let config = parse_config(&bytes(json!({"rootfs": {"diff_ids": [A]}}))).unwrap();
    assert!(layers_of(&manifest, &config).unwrap_err().contains("lz4"));
}

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
    let err = client
        .image_layers(NS, &ImageRef::Id(docker_list.config_digest.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerdError::ImageNotFound { .. }),
        "{err}"
    );
    let err = client
        .image_layers(NS, &ImageRef::Id("not-an-id".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerdError::ImageNotFound { .. }),
        "{err}"
    );
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
        &json!({"manifests": [descriptor(OCI_MANIFEST, B, Some(("linux", "mips")))]}),
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
