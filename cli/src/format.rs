//! The annotation formats of checkpoint images: the same layer (a checkpoint archive's
//! layout), annotated in one of three namespaces that different tools write and read.

use std::collections::BTreeMap;

use revive_checkpoint::archive::ContainerConfig;

/// How a checkpoint image says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// checkpointctl and containerd 2.1-2.3: `org.criu.checkpoint.*`, on an image index.
    Criu,
    /// CRI-O (kubelet checkpoints turned into images with buildah):
    /// `io.kubernetes.cri-o.annotations.checkpoint.*`, on the manifest.
    #[value(name = "cri-o")]
    CriO,
    /// Podman (`podman container checkpoint --create-image`):
    /// `io.podman.annotations.checkpoint.*`, on the manifest.
    Podman,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Criu, Format::CriO, Format::Podman];

    pub fn name(self) -> &'static str {
        match self {
            Format::Criu => "criu",
            Format::CriO => "cri-o",
            Format::Podman => "podman",
        }
    }

    /// The annotation prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Format::Criu => "org.criu.checkpoint.",
            Format::CriO => "io.kubernetes.cri-o.annotations.checkpoint.",
            Format::Podman => "io.podman.annotations.checkpoint.",
        }
    }

    /// Whether the annotations go on an image index (else on the manifest).
    pub fn on_index(self) -> bool {
        self == Format::Criu
    }

    /// The key (without prefix) naming the container.
    fn name_key(self) -> &'static str {
        match self {
            Format::Criu => "container.name",
            Format::CriO | Format::Podman => "name",
        }
    }

    /// The annotations of a checkpoint of the container `config` describes: its name, the
    /// base image's name, the name as the user gave it, its id, the runtime. Empty values
    /// are left out.
    pub fn annotations(self, config: &ContainerConfig) -> BTreeMap<String, String> {
        let raw_name_key = match self {
            Format::Criu => "rootfsImageUserRequested",
            Format::CriO | Format::Podman => "rawImageName",
        };
        [
            (self.name_key(), &config.name),
            ("rootfsImageName", &config.rootfs_image_name),
            (raw_name_key, &config.rootfs_image),
            ("rootfsImageID", &config.rootfs_image_ref),
            ("runtime.name", &config.runtime),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(key, value)| (format!("{}{key}", self.prefix()), value.clone()))
        .collect()
    }

    /// The format whose prefix some of `annotations` carry, and the container name they give.
    pub fn detect(annotations: &BTreeMap<String, String>) -> Option<(Format, Option<String>)> {
        Format::ALL.into_iter().find_map(|format| {
            annotations
                .keys()
                .any(|k| k.starts_with(format.prefix()))
                .then(|| {
                    let name = annotations
                        .get(&format!("{}{}", format.prefix(), format.name_key()))
                        .cloned();
                    (format, name)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_round_trip() {
        let config = ContainerConfig {
            name: "counter".into(),
            rootfs_image_name: "docker.io/library/busybox:latest".into(),
            rootfs_image: "busybox".into(),
            ..ContainerConfig::default()
        };
        for format in Format::ALL {
            let annotations = format.annotations(&config);
            assert_eq!(annotations.len(), 3, "{annotations:?}");
            assert_eq!(
                Format::detect(&annotations),
                Some((format, Some("counter".to_string())))
            );
        }
        assert_eq!(
            Format::Criu.annotations(&config)["org.criu.checkpoint.rootfsImageName"],
            "docker.io/library/busybox:latest"
        );
        assert_eq!(Format::detect(&BTreeMap::new()), None);
    }
}
