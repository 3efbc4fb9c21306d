//! OCI image archives built from local files, and importing archives into a node's
//! containerd.
//!
//! No registry is reachable from the machines Capstan is built on, so the images it needs
//! are made here: the sandbox image (`pause`, a static busybox sleeping) and a busybox
//! image for tests and first steps, both from Debian's `busybox-static`. An archive is an
//! OCI image layout in a tar file with one uncompressed layer, which `ctr images import`
//! and every OCI tool read.

use ring::digest::{SHA256, digest};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The sandbox image every pod's sandbox runs.
pub const PAUSE_IMAGE: &str = "capstan.local/pause:1";
/// The busybox image built for tests and first steps.
pub const BUSYBOX_IMAGE: &str = "capstan.local/busybox:1";
/// Where Debian's `busybox-static` installs busybox.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// One entry of an image's single layer.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    Directory { path: String, mode: u32 },
    File { path: String, mode: u32, contents: Vec<u8> },
    Symlink { path: String, target: String },
}

/// An image to build: its name, its files and its config.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// The full reference the image is imported as, e.g. `capstan.local/busybox:1`.
    pub name: String,
    pub entries: Vec<LayerEntry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// A failure to build or import an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path} (is the busybox-static package installed?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run ctr (part of the containerd package)")]
    Ctr(#[source] std::io::Error),
    #[error("importing {archive} failed: {message}")]
    Import { archive: PathBuf, message: String },
}

/// The busybox image: `/bin/busybox` with a link per applet, `/etc/passwd` and `/etc/group`
/// for root and nobody, `/tmp`, and `sh` as its command.
pub fn busybox_image(name: &str) -> Result<ImageBuild, ImageError> {
    let mut entries = busybox_root()?;
    entries.push(LayerEntry::Directory { path: "var/www".into(), mode: 0o755 });
    Ok(ImageBuild {
        name: name.to_owned(),
        entries,
        entrypoint: Vec::new(),
        cmd: vec!["sh".into()],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        working_dir: String::new(),
    })
}

/// The sandbox image: busybox's `sleep` forever as the sandbox's first process, holding
/// the pod's namespaces.
pub fn pause_image(name: &str) -> Result<ImageBuild, ImageError> {
    let contents = std::fs::read(BUSYBOX_BINARY)
        .map_err(|source| ImageError::Read { path: BUSYBOX_BINARY.into(), source })?;
    Ok(ImageBuild {
        name: name.to_owned(),
        entries: vec![
            LayerEntry::Directory { path: "bin".into(), mode: 0o755 },
            LayerEntry::File { path: "bin/busybox".into(), mode: 0o755, contents },
        ],
        entrypoint: vec!["/bin/busybox".into(), "sleep".into(), "2147483647".into()],
        cmd: Vec::new(),
        env: Vec::new(),
        working_dir: "/".into(),
    })
}

fn busybox_root() -> Result<Vec<LayerEntry>, ImageError> {
    let contents = std::fs::read(BUSYBOX_BINARY)
        .map_err(|source| ImageError::Read { path: BUSYBOX_BINARY.into(), source })?;
    let list = std::process::Command::new(BUSYBOX_BINARY)
        .arg("--list")
        .output()
        .map_err(|source| ImageError::Read { path: BUSYBOX_BINARY.into(), source })?;
    let mut entries = vec![
        LayerEntry::Directory { path: "bin".into(), mode: 0o755 },
        LayerEntry::Directory { path: "etc".into(), mode: 0o755 },
        LayerEntry::Directory { path: "root".into(), mode: 0o700 },
        LayerEntry::Directory { path: "tmp".into(), mode: 0o1777 },
        LayerEntry::Directory { path: "var".into(), mode: 0o755 },
        LayerEntry::File { path: "bin/busybox".into(), mode: 0o755, contents },
        LayerEntry::File {
            path: "etc/passwd".into(),
            mode: 0o644,
            contents: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".to_vec(),
        },
        LayerEntry::File {
            path: "etc/group".into(),
            mode: 0o644,
            contents: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        },
    ];
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        entries
            .push(LayerEntry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() });
    }
    Ok(entries)
}

/// Writes `image` as an OCI image layout archive at `out`.
pub fn write_oci_archive(image: &ImageBuild, out: &Path) -> Result<(), ImageError> {
    let layer = layer_tar(&image.entries);
    let layer_digest = sha256(&layer);
    let config = json!({
        "architecture": goarch(),
        "os": "linux",
        "config": {
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd,
            "Env": image.env,
            "WorkingDir": image.working_dir,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "capstan image build"}],
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let config_digest = sha256(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = sha256(&manifest);
    let tag = image.name.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": goarch(), "os": "linux"},
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let index = serde_json::to_vec(&index).unwrap_or_default();
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut archive = TarWriter::default();
    archive.directory("blobs", 0o755);
    archive.directory("blobs/sha256", 0o755);
    archive.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    archive.file("index.json", 0o644, &index);
    archive.file(&blob(&manifest_digest), 0o644, &manifest);
    archive.file(&blob(&config_digest), 0o644, &config);
    archive.file(&blob(&layer_digest), 0o644, &layer);
    let bytes = archive.finish();
    let write_error = |source| ImageError::Write { path: out.to_owned(), source };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let mut file = std::fs::File::create(out).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)
}

/// Imports an OCI or docker image archive into the containerd listening on `socket`, in
/// the CRI's namespace, with `ctr images import`.
pub async fn import(socket: &Path, archive: &Path) -> Result<Vec<String>, ImageError> {
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import", "--no-unpack", "--digests"])
        .arg(archive)
        .output()
        .await
        .map_err(ImageError::Ctr)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ImageError::Import {
            archive: archive.to_owned(),
            message: format!("{} {}", stderr.trim(), stdout.trim()).trim().to_owned(),
        });
    }
    // ctr prints "unpacking <name> (<digest>)...done" or "<name> <digest>" lines.
    Ok(stdout
        .lines()
        .filter_map(|line| {
            line.split_whitespace().find(|word| word.contains(':') && !word.starts_with("sha256:"))
        })
        .map(|name| name.trim_start_matches("unpacking").to_owned())
        .collect())
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn sha256(bytes: &[u8]) -> String {
    let hash = digest(&SHA256, bytes);
    let mut text = String::from("sha256:");
    for byte in hash.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn layer_tar(entries: &[LayerEntry]) -> Vec<u8> {
    let mut tar = TarWriter::default();
    for entry in entries {
        match entry {
            LayerEntry::Directory { path, mode } => tar.directory(path, *mode),
            LayerEntry::File { path, mode, contents } => tar.file(path, *mode, contents),
            LayerEntry::Symlink { path, target } => tar.symlink(path, target),
        }
    }
    tar.finish()
}

/// A minimal ustar writer: regular files, directories and symlinks owned by root, with
/// names that fit ustar's 100 bytes (every name here does).
#[derive(Debug, Default)]
struct TarWriter {
    bytes: Vec<u8>,
}

impl TarWriter {
    fn header(&mut self, path: &str, mode: u32, size: usize, kind: u8, link: &str) {
        let mut header = [0u8; 512];
        let put = |header: &mut [u8; 512], at: usize, len: usize, value: &[u8]| {
            let n = value.len().min(len);
            header[at..at + n].copy_from_slice(&value[..n]);
        };
        put(&mut header, 0, 100, path.as_bytes());
        put(&mut header, 100, 8, format!("{mode:07o}\0").as_bytes());
        put(&mut header, 108, 8, b"0000000\0");
        put(&mut header, 116, 8, b"0000000\0");
        put(&mut header, 124, 12, format!("{size:011o}\0").as_bytes());
        put(&mut header, 136, 12, b"00000000000\0");
        header[156] = kind;
        put(&mut header, 157, 100, link.as_bytes());
        put(&mut header, 257, 8, b"ustar\x0000");
        // The checksum is computed with its own field as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        put(&mut header, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&header);
    }

    fn directory(&mut self, path: &str, mode: u32) {
        self.header(&format!("{path}/"), mode, 0, b'5', "");
    }

    fn file(&mut self, path: &str, mode: u32, contents: &[u8]) {
        self.header(path, mode, contents.len(), b'0', "");
        self.bytes.extend_from_slice(contents);
        let padding = (512 - contents.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, padding));
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.header(path, 0o777, 0, b'2', target);
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_have_valid_checksums_and_padding() {
        let mut tar = TarWriter::default();
        tar.file("a", 0o644, b"hello");
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 + 512 + 1024);
        let header = &bytes[..512];
        let stored = std::str::from_utf8(&header[148..154]).map(|s| u32::from_str_radix(s, 8));
        let mut blank = header.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(stored.ok().and_then(Result::ok), Some(sum));
        assert_eq!(&bytes[512..517], b"hello");
    }
}
