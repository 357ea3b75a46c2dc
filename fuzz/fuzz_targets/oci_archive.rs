//! The revive CLI's reader of OCI image archives (`cli/src/layout.rs`): the input is the
//! archive file. It is scanned for its members (bounded GNU long names and PAX records), its
//! `index.json` read, and every image it lists followed down to its manifest, config and
//! layers, as `revive image inspect` and `convert` do.
//!
//! A blob read to its end must be what its descriptor says: its size and SHA-256 digest.
//! The seeds (scripts/fuzz-seeds.sh) are small archives with an image in them.
//!
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::oci;
use revive_cli::layout;

/// How many descriptors of each document are followed.
const FOLLOW: usize = 8;

fuzz_target!(|data: &[u8]| {
    let file = revive_fuzz::sandbox::base().join("archive.tar");
    std::fs::write(&file, data).expect("writing the input");
    let Ok(archive) = layout::OciArchive::open(&file) else {
        return;
    };
    let Ok(index) = archive.index() else {
        return;
    };
    let mut pending: Vec<oci::Descriptor> = index.manifests.into_iter().take(FOLLOW).collect();
    let mut followed = 0;
    while let Some(desc) = pending.pop() {
        followed += 1;
        if followed > 4 * FOLLOW {
            break;
        }
        if oci::is_index(&desc.media_type) {
            if let Ok(nested) = archive.index_blob(&desc) {
                pending.extend(nested.manifests.into_iter().take(FOLLOW));
            }
        } else if oci::is_manifest(&desc.media_type) {
            let Ok(manifest) = archive.manifest(&desc) else {
                continue;
            };
            let _ = archive.blob_bytes(&manifest.config, layout::MAX_JSON_BYTES);
            for layer in manifest.layers.iter().take(FOLLOW) {
                read_verified(&archive, layer);
            }
        } else {
            read_verified(&archive, &desc);
        }
    }
});

/// Reads the blob `desc` names to its end: if that succeeds, it is exactly what `desc` says.
fn read_verified(archive: &layout::OciArchive, desc: &oci::Descriptor) {
    let Ok(mut reader) = archive.blob(desc) else {
        return;
    };
    let mut blob = Vec::new();
    if reader.read_to_end(&mut blob).is_ok() {
        assert_eq!(blob.len() as u64, desc.size);
        assert_eq!(oci::sha256_digest(&blob), desc.digest);
    }
}
