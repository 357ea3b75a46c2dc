//! The image documents' parsers and checks, on documents written here.

use serde_json::json;

use super::media_types::*;
use super::*;

const A: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
const B: &str = "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
const C: &str = "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6";

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
            assert_eq!(err.available, ["linux/amd64", "linux/arm64"]);
            assert_eq!(
                err.to_string(),
                "no manifest for linux/s390x (the index has: linux/amd64, linux/arm64)"
            );
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
            assert_eq!(layers[1].compression().ok(), Some(Compression::Gzip));
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
    let err = choose_manifest(&index, "linux", "amd64")
        .unwrap_err()
        .available_list();
    assert!(
        err.contains("linux/arm64/v8") && err.contains("windows/amd64"),
        "{err}"
    );
    let empty: Index = serde_json::from_value(json!({"manifests": []})).unwrap();
    assert_eq!(
        choose_manifest(&empty, "linux", "amd64")
            .unwrap_err()
            .available_list(),
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
        assert!(!err.to_string().is_empty());
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
            .to_string()
            .contains("1 layers")
    );
    let manifest: Manifest = serde_json::from_value(json!({
        "config": descriptor(OCI_CONFIG, A, None),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+lz4", A, None)],
    }))
    .unwrap();
    let config = parse_config(&bytes(json!({"rootfs": {"diff_ids": [A]}}))).unwrap();
    assert!(
        layers_of(&manifest, &config)
            .unwrap_err()
            .to_string()
            .contains("lz4")
    );
}
