//! The registry in the node, and the images it serves, built here as OCI layouts under the
//! names containerd's tests pull.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::image::{Layer, busybox_applets};
use crate::node::{Node, tail};

use super::*;

// ---------------------------------------------------------------------------------------
// Images, built here as OCI layouts
// ---------------------------------------------------------------------------------------

/// A platform of a multi-platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
    pub os_version: Option<&'static str>,
}

impl Platform {
    pub const fn linux(architecture: &'static str, variant: Option<&'static str>) -> Platform {
        Platform {
            os: "linux",
            architecture,
            variant,
            os_version: None,
        }
    }

    /// The platform of this machine (the one images are run on).
    pub fn host() -> Platform {
        match std::env::consts::ARCH {
            "aarch64" => Platform::linux("arm64", Some("v8")),
            _ => Platform::linux("amd64", None),
        }
    }

    fn json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = self.variant {
            p["variant"] = json!(v);
        }
        if let Some(v) = self.os_version {
            p["os.version"] = json!(v);
        }
        p
    }

    fn describe(&self) -> String {
        let mut s = format!("{}/{}", self.os, self.architecture);
        if let Some(v) = self.variant {
            s.push_str(&format!("/{v}"));
        }
        s
    }
}

/// One platform's image: layers (bottom first) and the `config` section of its config.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub layers: Vec<Layer>,
    pub config: Value,
}

/// An image the registry serves, under one or more names.
#[derive(Debug, Clone)]
pub struct ServedImage {
    pub names: Vec<&'static str>,
    /// What it holds, for the report.
    pub what: &'static str,
    pub platforms: Vec<PlatformImage>,
}

/// Where the served images knowingly differ from upstream's, and why.
pub const IMAGE_NOTES: &str = "
Where they differ from upstream's images on purpose (the tests are unchanged):

- `sleep` is coreutils' (with its glibc), not busybox's: Debian's busybox-static `sleep`
  returns at once, status 0, when CRIU checkpoints it (measured: `sleep 100` ends right after
  `ctr task checkpoint`, leave-running or restored), which fails every `sleep`-based
  checkpoint test for any shim. coreutils' sleeps on.
- `nc` is a two-line shell wrapper (`trap 'exit 143' TERM`, then busybox `nc` in the
  background): Debian's busybox has the small `nc`, which sets no signal handler, so as a
  container's pid 1 it ignores SIGTERM and TestBindLowPortNonOpt hangs; upstream's exits
  with 143. The real `nc` still binds the port with the container's capabilities.
";

/// An image name a suite uses that is not served: the tests that pull it, and why.
#[derive(Debug, Clone, Copy)]
pub struct NotServed {
    pub image: &'static str,
    pub tests: &'static [&'static str],
    pub why: &'static str,
}

/// Image names the suites use that are not served.
pub const NOT_SERVED: &[NotServed] = &[
    NotServed {
        image: "gcr.io/google_containers/pause:3.0@sha256:0d093c96…",
        tests: &["TestImagePullSchema1"],
        why: "1.7 only: a Docker schema 1 manifest pinned by digest; its signed bytes cannot be \
              rebuilt locally",
    },
    NotServed {
        image: "gcr.io/google-containers/busybox@sha256:d8d3bc2c…",
        tests: &["TestImagePullSchema1WithEmptyLayers"],
        why: "1.7 only: a Docker schema 1 manifest pinned by digest, cannot be rebuilt",
    },
    NotServed {
        image: "ghcr.io/containerd/busybox@sha256:7b3ccabf…",
        tests: &["TestExportAllCases"],
        why: "2.3 and later: upstream's busybox index pinned by digest (the subtest \
              export_image_setting_ocispec.AnnotationRefName); its bytes cannot be rebuilt \
              locally",
    },
    NotServed {
        image: "registry.k8s.io/pause-amd64:3.2, cplatpublic.azurecr.io/…",
        tests: &[],
        why: "used by Windows-only tests",
    },
];

/// A skip a test decides on itself when `TEST_RUNTIME` is not the Go shim's: true for revive
/// by construction, so not a regression; the report lists it.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSkip {
    pub test: &'static str,
    /// What the test prints when it skips.
    pub says: &'static str,
    pub why: &'static str,
}

/// The skips of [`RuntimeSkip`] known in the suites.
pub const RUNTIME_SKIPS: &[RuntimeSkip] = &[RuntimeSkip {
    test: "TestIssue10589",
    says: "test requires io.containerd.runc.v2",
    why: "containerd 1.7's copy of the test skips itself for every TEST_RUNTIME other than \
          io.containerd.runc.v2 (container_linux_test.go); 2.x's has no such check, and revive \
          passes it there",
}];

/// The [`RuntimeSkip`] a result is, if any.
pub fn runtime_skip(test: &str, result: &TestResult) -> Option<&'static RuntimeSkip> {
    if result.outcome != Outcome::Skip {
        return None;
    }
    RUNTIME_SKIPS
        .iter()
        .find(|s| s.test == test && result.reason.contains(s.says))
}

/// Why `test` cannot pass here, when it pulls an image that is not served.
pub fn not_served(test: &str) -> Option<&'static NotServed> {
    NOT_SERVED.iter().find(|n| n.tests.contains(&test))
}

/// The hosts the tests pull from; `/etc/hosts` points them at the node's registry.
pub const REGISTRY_HOSTS: &[&str] = &[
    "ghcr.io",
    "registry.k8s.io",
    "gcr.io",
    "mcr.microsoft.com",
    "docker.io",
    "registry-1.docker.io",
    "cplatpublic.azurecr.io",
];

/// /etc/passwd and /etc/group of the official busybox image (what the user tests expect:
/// www-data is 33:33, uid 3 is sys with gid 3).
const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

const BUSYBOX_GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n\
disk:x:6:\nlp:x:7:\nmail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\ndialout:x:18:\n\
floppy:x:19:\nvideo:x:28:\naudio:x:29:\ntape:x:32:\nwww-data:x:33:\noperator:x:37:\n\
utmp:x:43:\nstaff:x:50:\nlock:x:54:\nusers:x:100:\nnogroup:x:65534:\n";

/// Users of an Ubuntu base image, which volume-ownership is built on (backup is 34).
const UBUNTU_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
sys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
sync:x:4:65534:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n\
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

const UBUNTU_GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\n\
tty:x:5:\nmail:x:8:\nwww-data:x:33:\nbackup:x:34:\nstaff:x:50:\nusers:x:100:\n\
nogroup:x:65534:\n";

/// busybox from a node root's busybox-static with a link per applet, the usual
/// directories, and the given users.
pub fn busybox_layer(rootfs: &Path, passwd: &str, group: &str) -> Result<Layer> {
    let (data, all) = busybox_applets(rootfs)?;
    let mut layer = Layer::new().file("bin/busybox", data, 0o755);
    let mut dirs = BTreeSet::from(["bin".to_string()]);
    // Applet name -> its path (`nc` is usr/bin/nc, `sleep` bin/sleep).
    let mut applets = BTreeMap::new();
    for applet in &all {
        if let Some((dir, name)) = applet.rsplit_once('/') {
            dirs.insert(dir.to_string());
            applets.insert(name.to_string(), applet.to_string());
        }
        layer = layer.symlink(applet, "/bin/busybox");
    }
    let path_of = |name: &str| {
        applets
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("bin/{name}"))
    };
    for dir in [
        "etc",
        "proc",
        "sys",
        "dev",
        "var",
        "var/spool",
        "var/www",
        "home",
        "usr",
    ] {
        dirs.insert(dir.to_string());
    }
    for dir in dirs {
        layer = layer.dir(&dir, 0o755);
    }
    with_coreutils_sleep(
        rootfs,
        &path_of("sleep"),
        layer
            // Debian's busybox builds the small `nc`, which sets no signal handlers, so as a
            // container's pid 1 it ignores SIGTERM (the kernel drops it); the official
            // image's `nc` exits with 143 on it, which a test waits for. Same exit status,
            // and the real nc still does the binding (with the container's capabilities).
            .file(
                &path_of("nc"),
                "#!/bin/sh\ntrap 'exit 143' TERM\n/bin/busybox nc \"$@\" &\nwait $!\n",
                0o755,
            )
            .dir("tmp", 0o1777)
            .dir("root", 0o700)
            .file("etc/passwd", passwd, 0o644)
            .file("etc/group", group, 0o644),
    )
}

/// Replaces busybox's `sleep` with coreutils' (and the glibc it needs, from the same root).
///
/// Debian's busybox-static `sleep` returns at once, with status 0, when CRIU checkpoints it
/// (measured here: `sleep 100` ends right after `ctr task checkpoint`, leave-running or
/// restored alike), so every checkpoint test that runs `sleep N` would fail for any shim.
/// coreutils' `sleep` sleeps on across a checkpoint. Only on x86_64, where the paths below
/// are known; elsewhere busybox's stays.
fn with_coreutils_sleep(rootfs: &Path, path: &str, layer: Layer) -> Result<Layer> {
    if std::env::consts::ARCH != "x86_64" {
        return Ok(layer);
    }
    let read = |rel: &str| {
        fs::read(rootfs.join(rel)).with_context(|| format!("reading {rel} of the node root"))
    };
    Ok(layer
        .file(path, read("usr/bin/sleep")?, 0o755)
        .dir("lib", 0o755)
        .dir("lib/x86_64-linux-gnu", 0o755)
        .file(
            "lib/x86_64-linux-gnu/libc.so.6",
            read("usr/lib/x86_64-linux-gnu/libc.so.6")?,
            0o755,
        )
        .dir("lib64", 0o755)
        .file(
            "lib64/ld-linux-x86-64.so.2",
            read("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")?,
            0o755,
        ))
}

/// A tiny layer standing in for another platform's content (never run here).
fn placeholder(platform: &Platform, image: &str) -> PlatformImage {
    PlatformImage {
        platform: platform.clone(),
        layers: vec![Layer::new().file(
            "PLATFORM",
            format!(
                "{image} for {}: a placeholder built by revive's conformance harness\n",
                platform.describe()
            ),
            0o644,
        )],
        config: json!({"Cmd": ["/PLATFORM"]}),
    }
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The foreign platforms multi-platform images carry besides this machine's.
fn foreign_platforms() -> Vec<Platform> {
    let host = Platform::host();
    [
        Platform::linux("amd64", None),
        Platform::linux("arm64", Some("v8")),
        Platform::linux("arm", Some("v7")),
        Platform::linux("ppc64le", None),
        Platform::linux("s390x", None),
        Platform::linux("386", None),
    ]
    .into_iter()
    .filter(|p| p.architecture != host.architecture)
    .collect()
}

/// Every image the suites pull, built from `rootfs` (a node root, for busybox).
pub fn served_images(rootfs: &Path) -> Result<Vec<ServedImage>> {
    let busybox = busybox_layer(rootfs, BUSYBOX_PASSWD, BUSYBOX_GROUP)?;
    let sh = json!({"Env": [PATH_ENV], "Cmd": ["sh"]});
    let multi = |image: &str, native: PlatformImage| -> Vec<PlatformImage> {
        let mut all = vec![native];
        all.extend(foreign_platforms().iter().map(|p| placeholder(p, image)));
        all
    };
    let host = Platform::host();
    let busybox_image = PlatformImage {
        platform: host.clone(),
        layers: vec![busybox.clone()],
        config: sh.clone(),
    };
    let pause = PlatformImage {
        platform: host.clone(),
        // A layer of its own (a test pulls it without unpacking and expects no snapshot:
        // a layer shared with the seed image would already be unpacked).
        layers: vec![busybox.clone().file("pause", "pause\n", 0o644)],
        config: json!({"Env": [PATH_ENV], "Entrypoint": ["/bin/sleep", "2147483647"]}),
    };
    let copy_up = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox.clone(),
            Layer::new()
                .dir("test_dir", 0o755)
                .file("test_dir/test_file", "test_content\n", 0o644),
        ],
        config: json!({"Env": [PATH_ENV], "Cmd": ["sh"], "Volumes": {"/test_dir": {}}}),
    };
    let ownership = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox_layer(rootfs, UBUNTU_PASSWD, UBUNTU_GROUP)?
                // What the set-uid test looks for (never executed).
                .file(
                    "usr/bin/passwd",
                    "#!/bin/sh\necho 'passwd: a placeholder'\n",
                    0o4755,
                )
                // The tests run `bash -c ...`; busybox has no bash applet.
                .file("bin/bash", "#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755)
                // runc mounts a tmpfs there; a read-only rootfs must have it.
                .dir("run", 0o755),
            Layer::new().dir_owned("test_dir", 0o755, 65534, 65534),
        ],
        config: json!({"Env": [PATH_ENV], "Cmd": ["bash"], "Volumes": {"/test_dir": {}}}),
    };
    let alpine = PlatformImage {
        platform: host.clone(),
        layers: vec![busybox.clone().dir("run", 0o755)],
        config: json!({"Env": [PATH_ENV], "Cmd": ["/bin/sh"]}),
    };
    // What 2.4's TestIssue13030 builds for itself (2.3's pulls it): files and a directory
    // that later layers delete again with whiteouts.
    let whiteout = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox.clone(),
            Layer::new().file("file-to-delete", "", 0o644),
            Layer::new().file(".wh.file-to-delete", "", 0o644),
            Layer::new()
                .dir("dir-to-delete", 0o755)
                .file("dir-to-delete/foo", "", 0o644),
            Layer::new().file(".wh.dir-to-delete", "", 0o644),
        ],
        config: sh.clone(),
    };
    let nanoserver = Platform {
        os: "windows",
        architecture: "amd64",
        variant: None,
        os_version: Some("10.0.17763.1"),
    };
    Ok(vec![
        ServedImage {
            names: vec!["ghcr.io/containerd/busybox:1.36"],
            what: "busybox-static (`sleep` and `nc` see below) with the official image's \
                   users; an index of 6 platforms, the foreign ones placeholders",
            platforms: multi("busybox", busybox_image.clone()),
        },
        ServedImage {
            names: vec![
                "registry.k8s.io/pause:3.10.2",
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.8",
                "registry.k8s.io/pause:3.6",
            ],
            what: "busybox sleeping forever; 6 platforms",
            platforms: multi("pause", pause),
        },
        ServedImage {
            names: vec!["registry.k8s.io/e2e-test-images/busybox:1.29-2"],
            what: "busybox; 6 platforms (the test fetches amd64, arm64/v8 and s390x)",
            platforms: multi("e2e busybox", busybox_image),
        },
        ServedImage {
            names: vec![
                "ghcr.io/containerd/volume-copy-up:2.2",
                "ghcr.io/containerd/volume-copy-up:2.1",
            ],
            what: "busybox plus a second layer with /test_dir/test_file, VOLUME /test_dir \
                   (as upstream's Dockerfile)",
            platforms: multi("volume-copy-up", copy_up),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/volume-ownership:2.1"],
            what: "busybox with Ubuntu's users (backup is 34), a set-uid /usr/bin/passwd, \
                   `bash`, /run, /test_dir owned by nobody:nogroup, VOLUME /test_dir",
            platforms: multi("volume-ownership", ownership),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/alpine:3.14.0"],
            what: "busybox standing in for alpine (1.7's user-namespace tests run `sh`)",
            platforms: multi("alpine", alpine),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/whiteout-test:1.0"],
            what: "busybox plus four layers: /file-to-delete, its whiteout, \
                   /dir-to-delete/foo, the directory's whiteout (as 2.4's TestIssue13030 \
                   builds it)",
            platforms: multi("whiteout-test", whiteout),
        },
        ServedImage {
            names: vec![
                "ghcr.io/containerd/windows/nanoserver:1809",
                "mcr.microsoft.com/windows/nanoserver:1809",
            ],
            what: "a windows/amd64 placeholder only (the test expects a Linux pull to fail)",
            platforms: vec![placeholder(&nanoserver, "nanoserver")],
        },
    ])
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// JSON with sorted keys (serde_json's maps are sorted), so equal images get equal digests.
fn canonical(value: &Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Writes `image` as an OCI image layout directory holding one image index tagged `tag`
/// (for `skopeo copy --all oci:<dir>:<tag> docker://...`). Returns the index digest.
pub fn write_layout(dir: &Path, tag: &str, image: &ServedImage) -> Result<String> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> Result<(String, usize)> {
        let digest = digest_of(data);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        if !path.exists() {
            fs::write(&path, data)?;
        }
        Ok((digest, data.len()))
    };
    let mut manifests = Vec::new();
    for p in &image.platforms {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &p.layers {
            let tar = layer.tar()?;
            diff_ids.push(digest_of(&tar));
            let (digest, size) = put(&gzip(&tar)?)?;
            layers.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": size,
            }));
        }
        let mut config = p.platform.json();
        config["config"] = p.config.clone();
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let (config_digest, config_size) = put(&canonical(&config)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config_size,
            },
            "layers": layers,
        });
        let (digest, size) = put(&canonical(&manifest)?)?;
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size, "platform": p.platform.json(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (digest, size) = put(&canonical(&index)?)?;
    let layout_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), canonical(&layout_index)?)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(digest)
}

// ---------------------------------------------------------------------------------------
// The registry in the node
// ---------------------------------------------------------------------------------------

/// The node's registry: docker-registry on 127.0.0.1:443, TLS from a test CA the node
/// trusts, the registry names in /etc/hosts, the suites' images pushed.
#[derive(Debug)]
pub struct Registry {
    /// Image name -> index digest.
    pub pushed: BTreeMap<String, String>,
    pub seconds: f64,
}

const REGISTRY_DIR: &str = "/etc/revive-registry";

/// docker-registry's configuration: serving on `addr` with TLS (`cert`, `key`), images in
/// `/var/lib/revive-registry`, deletes allowed.
pub fn registry_config(addr: &str, cert: &str, key: &str) -> String {
    format!(
        "version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/revive-registry
  delete:
    enabled: true
http:
  addr: {addr}
  tls:
    certificate: {cert}
    key: {key}
"
    )
}

impl Registry {
    pub fn start(node: &Node, images: &[ServedImage]) -> Result<Registry> {
        let started = Instant::now();
        let hosts = REGISTRY_HOSTS.join(" ");
        let san: Vec<String> = REGISTRY_HOSTS
            .iter()
            .map(|h| format!("DNS:{h}"))
            .chain(["DNS:localhost".to_string(), "IP:127.0.0.1".to_string()])
            .collect();
        let setup = format!(
            "set -e; d={REGISTRY_DIR}; mkdir -p $d /var/lib/revive-registry; cd $d
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj '/CN=revive conformance test CA' -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj '/CN=revive conformance registry' -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile server.ext -out server.crt 2>/dev/null
cp ca.crt /usr/local/share/ca-certificates/revive-conformance-ca.crt
update-ca-certificates >/dev/null 2>&1
echo '127.0.0.1 {hosts}' >> /etc/hosts",
            san = san.join(",")
        );
        node.sh(&setup)
            .context("setting up the registry's CA and configuration")?;
        fs::write(
            node.host_path(&format!("{REGISTRY_DIR}/config.yml")),
            registry_config(
                "127.0.0.1:443",
                &format!("{REGISTRY_DIR}/server.crt"),
                &format!("{REGISTRY_DIR}/server.key"),
            ),
        )
        .context("writing the registry's configuration")?;
        node.spawn_daemon(
            "registry",
            &format!("docker-registry serve {REGISTRY_DIR}/config.yml"),
        )?;
        let probe = "openssl s_client -connect 127.0.0.1:443 -servername ghcr.io \
                     -verify_return_error -verify_hostname ghcr.io \
                     -CAfile /etc/ssl/certs/ca-certificates.crt </dev/null >/dev/null 2>&1";
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = node.exec_timeout(&["sh", "-c", probe], Duration::from_secs(10))?;
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    fs::read_to_string(node.logs_dir().join("registry.log")).unwrap_or_default();
                bail!(
                    "the registry did not answer with a trusted certificate within 30 s:\n{}",
                    tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let layouts = node.share_dir().join("conformance/images");
        fs::create_dir_all(&layouts)?;
        let mut pushed = BTreeMap::new();
        for (i, image) in images.iter().enumerate() {
            let dir = layouts.join(format!("image-{i}"));
            let digest = write_layout(&dir, "image", image)?;
            for name in &image.names {
                let out = node.exec_timeout(
                    &[
                        "skopeo",
                        "copy",
                        "--quiet",
                        "--all",
                        "--preserve-digests",
                        &format!("oci:{NODE_DIR}/images/image-{i}:image"),
                        &format!("docker://{name}"),
                    ],
                    Duration::from_secs(120),
                )?;
                if !out.status.success() {
                    bail!(
                        "pushing {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                pushed.insert(name.to_string(), digest.clone());
            }
        }
        Ok(Registry {
            pushed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_reproducible_indexes() {
        let image = ServedImage {
            names: vec!["ghcr.io/x/y:1"],
            what: "test",
            platforms: vec![
                PlatformImage {
                    platform: Platform::host(),
                    layers: vec![
                        Layer::new().dir_owned("d", 0o755, 65534, 65534),
                        Layer::new().file("f", "x", 0o4755),
                    ],
                    config: json!({"Cmd": ["sh"]}),
                },
                placeholder(&Platform::linux("s390x", None), "y"),
            ],
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let da = write_layout(a.path(), "t", &image).unwrap();
        let db = write_layout(b.path(), "t", &image).unwrap();
        assert_eq!(da, db, "two builds of one image differ");
        let blob = |d: &str| {
            fs::read(
                a.path()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let index: Value = serde_json::from_slice(&blob(&da)).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1]["platform"]["architecture"], "s390x");
        let manifest: Value =
            serde_json::from_slice(&blob(manifests[0]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        let config: Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        // Owners and modes survive into the layer.
        let layer = flate2::read::GzDecoder::new(std::io::Cursor::new(blob(
            manifest["layers"][0]["digest"].as_str().unwrap(),
        )));
        let mut archive = tar::Archive::new(layer);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.header().uid().unwrap(), 65534);
        let top: Value =
            serde_json::from_slice(&fs::read(a.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "t"
        );
    }
}
