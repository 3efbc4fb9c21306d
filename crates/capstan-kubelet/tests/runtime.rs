//! The runtime foundation against a real containerd: the generated config starts, the
//! built images import, and a sandbox on a CNI bridge runs a busybox container whose
//! output reaches its CRI log. Needs root, containerd, runc, the CNI plugins and
//! busybox-static (`cargo xtask test` installs them).

use capstan_kubelet::containerd::{Containerd, ContainerdConfig, ContainerdPaths};
use capstan_kubelet::image_archive::{self, BUSYBOX_IMAGE, PAUSE_IMAGE};
use capstan_kubelet::runtime::cri_api::*;
use capstan_kubelet::runtime::{CriRuntime, Runtime};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_on_a_bridge_runs_a_container() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("cap-rt").tempdir_in("/tmp")?;
    let paths = ContainerdPaths::new(dir.path());
    let config = ContainerdConfig {
        paths: paths.clone(),
        sandbox_image: PAUSE_IMAGE.into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        stream_address: "127.0.0.1".into(),
        registry_auth: Vec::new(),
    };
    let bridge = format!("capt{}", std::process::id() % 100_000);
    let subnet = format!("10.250.{}.0/24", std::process::id() % 250);
    std::fs::create_dir_all(paths.cni_conf_dir())?;
    std::fs::write(
        paths.cni_conf_dir().join("10-test.conflist"),
        serde_json::json!({
            "cniVersion": "0.4.0", "name": "test",
            "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                         "dataDir": dir.path().join("ipam")}}]
        })
        .to_string(),
    )?;
    let containerd = Containerd::start(&config).await?;
    let outcome = run(dir.path(), containerd.socket()).await;
    containerd.stop().await;
    let _ = std::process::Command::new("ip").args(["link", "delete", &bridge]).status();
    outcome
}

async fn run(dir: &std::path::Path, socket: &std::path::Path) -> anyhow::Result<()> {
    for image in
        [image_archive::pause_image(PAUSE_IMAGE)?, image_archive::busybox_image(BUSYBOX_IMAGE)?]
    {
        let archive = dir.join("image.tar");
        image_archive::write_oci_archive(&image, &archive)?;
        image_archive::import(socket, &archive).await?;
    }
    let runtime = CriRuntime::connect(socket).await?;
    let (name, version) = runtime.version().await?;
    assert_eq!(name, "containerd");
    assert!(!version.is_empty());
    assert!(runtime.image_status(BUSYBOX_IMAGE).await?.is_some());

    let logs = dir.join("logs");
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "p".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "p".into(),
        log_directory: logs.display().to_string(),
        labels: HashMap::from([("io.kubernetes.pod.name".into(), "p".into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/capstan-test/poduid-1".into(),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    };
    let started = std::time::Instant::now();
    let sandbox = runtime.run_pod_sandbox(sandbox_config.clone(), String::new()).await?;
    let sandbox_time = started.elapsed();
    let status = runtime.pod_sandbox_status(&sandbox).await?;
    let ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
    assert!(ip.starts_with("10.250."), "pod IP {ip}");
    let container = runtime
        .create_container(
            &sandbox,
            ContainerConfig {
                metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
                image: Some(ImageSpec { image: BUSYBOX_IMAGE.into(), ..ImageSpec::default() }),
                command: vec!["sh".into(), "-c".into(), "echo hello from $(hostname)".into()],
                log_path: "c/0.log".into(),
                ..ContainerConfig::default()
            },
            sandbox_config,
        )
        .await?;
    runtime.start_container(&container).await?;
    let mut exited = false;
    for _ in 0..100 {
        let status = runtime.container_status(&container).await?.status.unwrap_or_default();
        if status.state == ContainerState::ContainerExited as i32 {
            assert_eq!(status.exit_code, 0);
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited, "the container did not exit");
    let log = std::fs::read_to_string(logs.join("c/0.log"))?;
    assert!(log.contains("stdout F hello from p"), "{log}");
    eprintln!("sandbox {sandbox_time:?}, pod ip {ip}");
    runtime.remove_container(&container).await?;
    runtime.stop_pod_sandbox(&sandbox).await?;
    runtime.remove_pod_sandbox(&sandbox).await?;
    assert!(runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await?.is_empty());
    for controller in std::fs::read_dir("/sys/fs/cgroup")? {
        let _ = std::fs::remove_dir(controller?.path().join("capstan-test/poduid-1"));
    }
    for controller in std::fs::read_dir("/sys/fs/cgroup")? {
        let _ = std::fs::remove_dir(controller?.path().join("capstan-test"));
    }
    Ok(())
}
