//! The image documents revive-snapshotter reads from containerd to find a checkpoint's base
//! image (`checkpoint/src/oci.rs`). The input is a byte choosing the target's media type
//! (one of those containerd stores, none, or another), a byte choosing the architecture,
//! then the target document, a NUL, and the image config.
//!
//! A target that parses is an index or a manifest whose every digest is sha256; from an
//! index, the manifest chosen is one of its entries; a manifest and a config that parse
//! give layers, one per diff ID, whose chain IDs are digests (they name directories).
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::oci;
use revive_checkpoint::oci::media_types::*;

const MEDIA_TYPES: &[&str] = &[
    "",
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    "application/json",
];

const ARCHES: &[&str] = &["amd64", "arm64", "arm", "386", "ppc64le", ""];

fuzz_target!(|data: &[u8]| {
    let [kind, arch, rest @ ..] = data else {
        return;
    };
    let media_type = MEDIA_TYPES[usize::from(*kind) % MEDIA_TYPES.len()];
    let arch = ARCHES[usize::from(*arch) % ARCHES.len()];
    let mut parts = rest.splitn(2, |b| *b == 0);
    let document = parts.next().unwrap_or_default();
    let config = parts.next().unwrap_or_default();
    let Ok(document) = oci::parse_document(media_type, document) else {
        return;
    };
    match document {
        oci::Document::Index(index) => {
            assert!(
                index
                    .manifests
                    .iter()
                    .all(|d| oci::is_sha256_digest(&d.digest))
            );
            if let Ok(chosen) = oci::choose_manifest(&index, "linux", arch) {
                assert!(index.manifests.contains(&chosen));
            }
        }
        oci::Document::Manifest(manifest) => {
            assert!(oci::is_sha256_digest(&manifest.config.digest));
            assert!(manifest.layers.len() <= oci::MAX_LAYERS);
            let Ok(config) = oci::parse_config(config) else {
                return;
            };
            assert!(
                config
                    .rootfs
                    .diff_ids
                    .iter()
                    .all(|d| oci::is_sha256_digest(d))
            );
            if let Ok(layers) = oci::layers_of(&manifest, &config) {
                assert_eq!(layers.len(), manifest.layers.len());
                for layer in &layers {
                    assert!(oci::is_sha256_digest(&layer.digest));
                    assert!(oci::is_sha256_digest(&layer.chain_id));
                    assert_eq!(layer.chain_id_hex().len(), 64);
                    assert!(layer.compression().is_ok());
                }
            }
        }
    }
});
