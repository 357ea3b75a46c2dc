//! The restore check in the shim: before a container is restored, every process of its
//! checkpoint is held to the spec containerd or CRI wrote for it
//! ([`revive_checkpoint::privilege`]). The spec is read before the shim changes anything in it.

use std::path::Path;

use log::info;
use revive_checkpoint::criu::images;
use revive_checkpoint::privilege::{self, Host, Policy};
use serde_json::Value;

use crate::error::{Error, Result};

/// Refuses the restore of container `id` from the CRIU images in `images` if anything they
/// would bring back holds more privilege than `spec` grants.
pub fn check(id: &str, spec: &Value, image_dir: &Path) -> Result<()> {
    let policy = Policy::from_spec(spec).map_err(|e| {
        Error::InvalidArgument(format!(
            "{id}: restore refused: the container's spec cannot be checked: {e}"
        ))
    })?;
    let checkpoint = images::read_dir(image_dir).map_err(|e| {
        Error::InvalidArgument(format!(
            "{id}: restore refused: the checkpoint's CRIU images ({}) cannot be checked: {e}",
            image_dir.display()
        ))
    })?;
    privilege::check(&checkpoint, &policy, &Host::of_this_process())
        .map_err(|refusal| Error::PermissionDenied(format!("{id}: {refusal}")))?;
    info!(
        "{id}: the checkpoint's {} processes hold no more privilege than the container's spec",
        checkpoint.processes.len()
    );
    Ok(())
}

/// `runc restore` arguments that give the restored processes the spec's LSM labels instead
/// of the ones CRIU's images name (as CRI-O does).
pub fn lsm_args(spec: &Value) -> Vec<String> {
    let process = &spec["process"];
    let mut args = Vec::new();
    let label = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(profile) = label(&process["apparmorProfile"]) {
        args.push(format!("--lsm-profile=apparmor:{profile}"));
    } else if let Some(label) = label(&process["selinuxLabel"]) {
        args.push(format!("--lsm-profile=selinux:{label}"));
    }
    if let Some(context) = label(&spec["linux"]["mountLabel"]) {
        args.push(format!("--lsm-mount-context={context}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_s_labels_become_runc_restore_arguments() {
        assert!(lsm_args(&json!({"process": {}})).is_empty());
        assert_eq!(
            lsm_args(&json!({"process": {"apparmorProfile": "cri-containerd.apparmor.d"}})),
            ["--lsm-profile=apparmor:cri-containerd.apparmor.d"]
        );
        assert_eq!(
            lsm_args(&json!({
                "process": {"selinuxLabel": "system_u:system_r:container_t:s0:c1,c2"},
                "linux": {"mountLabel": "system_u:object_r:container_file_t:s0:c1,c2"},
            })),
            [
                "--lsm-profile=selinux:system_u:system_r:container_t:s0:c1,c2",
                "--lsm-mount-context=system_u:object_r:container_file_t:s0:c1,c2"
            ]
        );
    }

    #[test]
    fn unreadable_images_or_specs_refuse_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let err = check("c", &json!({"process": {}}), dir.path()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string().contains("inventory.img is missing"),
            "{err}"
        );
        let err = check("c", &json!({"process": {"user": {"uid": "x"}}}), dir.path()).unwrap_err();
        assert!(err.to_string().contains("spec cannot be checked"), "{err}");
    }
}
