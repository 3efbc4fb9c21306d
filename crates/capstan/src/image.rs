//! `capstan image`: images for a node's runtime without a registry. `import` loads OCI or
//! docker archives into the containerd of the node whose data dir is given; `build` writes
//! the archives Capstan can make itself (busybox, the sandbox image) from busybox-static.

use anyhow::Context;
use capstan_kubelet::containerd::ContainerdPaths;
use capstan_kubelet::image_archive;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Import image archives (OCI layout or `docker save` tars) into a node's runtime.
    Import {
        /// The node's data dir (its containerd socket is under `<data-dir>/agent`).
        #[arg(long, default_value = "/var/lib/capstan", env = "CAPSTAN_DATA_DIR")]
        data_dir: PathBuf,
        /// A CRI socket to import into instead (containerd's).
        #[arg(long)]
        container_runtime_endpoint: Option<PathBuf>,
        /// The archives.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write an image archive built from this host's busybox-static.
    Build {
        /// `busybox` (a shell and the usual tools) or `pause` (the sandbox image).
        #[arg(value_parser = ["busybox", "pause"])]
        image: String,
        /// The image's name (default: capstan.local/busybox:1 or capstan.local/pause:1).
        #[arg(long)]
        name: Option<String>,
        /// Where to write the archive.
        #[arg(long, short)]
        output: PathBuf,
    },
}

pub(crate) async fn run(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Import { data_dir, container_runtime_endpoint, files } => {
            let socket = container_runtime_endpoint
                .unwrap_or_else(|| ContainerdPaths::new(&data_dir).socket());
            anyhow::ensure!(
                socket.exists(),
                "no container runtime at {} (is a capstan server or agent running with --data-dir {}?)",
                socket.display(),
                data_dir.display()
            );
            for file in files {
                anyhow::ensure!(file.is_file(), "{}: no such file", file.display());
                let images = image_archive::import(&socket, &file)
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
                println!("{}: imported {}", file.display(), images.join(", "));
            }
            Ok(())
        }
        ImageCommand::Build { image, name, output } => {
            let build = match image.as_str() {
                "pause" => image_archive::pause_image(
                    name.as_deref().unwrap_or(image_archive::PAUSE_IMAGE),
                )?,
                _ => image_archive::busybox_image(
                    name.as_deref().unwrap_or(image_archive::BUSYBOX_IMAGE),
                )?,
            };
            image_archive::write_oci_archive(&build, &output)?;
            println!("{}: {}", output.display(), build.name);
            Ok(())
        }
    }
}
