//! Volume preparation, mounts and teardown against a temporary pod directory and the
//! recording [`FakeMounter`]; no API server (the client given points nowhere and the volumes
//! used here never call it).

use super::*;
use k8s_cri::v1::MountPropagation;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, HostPathVolumeSource, LocalVolumeSource, NFSVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
    PersistentVolumeSpec, PodSpec, ProjectedVolumeSource, ResourceRequirements, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn context() -> PodContext {
    PodContext {
        pod_ip: Some("10.42.0.3".into()),
        pod_ips: vec!["10.42.0.3".into()],
        host_ip: Some("192.168.0.2".into()),
        node_allocatable_cpu_millis: 2000,
        node_allocatable_memory_bytes: 4 << 30,
    }
}

fn volume(name: &str) -> Volume {
    Volume { name: name.into(), ..Default::default() }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("uid-9".into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    limits: Some([("memory".to_owned(), K8sQuantity("256Mi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn metadata_file(path: &str, field: &str) -> DownwardAPIVolumeFile {
    DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector { field_path: field.into(), api_version: None }),
        ..Default::default()
    }
}

#[tokio::test]
async fn prepares_local_volumes_and_tears_them_down() {
    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pods/uid-9");
    let host = dir.path().join("host/data");
    let volumes = vec![
        Volume { empty_dir: Some(EmptyDirVolumeSource::default()), ..volume("scratch") },
        Volume {
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(K8sQuantity("64Mi".into())),
            }),
            ..volume("cache")
        },
        Volume {
            host_path: Some(HostPathVolumeSource {
                path: host.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..volume("data")
        },
        Volume {
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![metadata_file("labels", "metadata.labels")]),
                ..Default::default()
            }),
            ..volume("info")
        },
        Volume {
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o400),
                sources: Some(vec![VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![metadata_file("namespace", "metadata.namespace")]),
                    }),
                    ..Default::default()
                }]),
            }),
            ..volume("api")
        },
    ];
    let pod = pod(volumes);
    let mounter = FakeMounter::new();
    let prepared = prepare(&client(), &pod, &pod_dir, &context(), &mounter).await.unwrap();

    let root = pod_dir.join("volumes");
    let scratch = prepared.get("scratch").unwrap();
    assert_eq!(scratch.host_path, root.join("kubernetes.io~empty-dir/scratch"));
    assert!(!scratch.read_only);
    assert!(scratch.host_path.is_dir());
    assert_eq!(prepared.get("data").unwrap().host_path, host);
    assert!(host.is_dir(), "DirectoryOrCreate made the directory");
    let info = prepared.get("info").unwrap();
    assert_eq!(info.host_path, root.join("kubernetes.io~downward-api/info"));
    assert!(info.read_only);
    assert_eq!(std::fs::read_to_string(info.host_path.join("labels")).unwrap(), "app=\"web\"");
    let api = prepared.get("api").unwrap();
    assert_eq!(api.host_path, root.join("kubernetes.io~projected/api"));
    assert_eq!(std::fs::read_to_string(api.host_path.join("namespace")).unwrap(), "shop");

    // The memory emptyDir has the smallest of its limit, the pod's and the node's; the
    // downwardAPI and projected volumes sit on tmpfs as large as the pod's limit.
    let mib = 1 << 20;
    assert_eq!(
        mounter.calls(),
        [
            MountCall::MountTmpfs {
                target: root.join("kubernetes.io~empty-dir/cache"),
                size_bytes: Some(64 * mib)
            },
            MountCall::MountTmpfs { target: info.host_path.clone(), size_bytes: Some(256 * mib) },
            MountCall::MountTmpfs { target: api.host_path.clone(), size_bytes: Some(256 * mib) },
        ]
    );

    // A second sync mounts nothing new and rewrites nothing.
    let data_link = std::fs::read_link(info.host_path.join("..data")).unwrap();
    let again = prepare(&client(), &pod, &pod_dir, &context(), &mounter).await.unwrap();
    assert_eq!(again, prepared);
    assert_eq!(mounter.calls().len(), 3);
    assert_eq!(std::fs::read_link(info.host_path.join("..data")).unwrap(), data_link);

    teardown(&pod_dir, &mounter).await.unwrap();
    assert!(mounter.mounted().is_empty());
    assert_eq!(
        mounter.calls().iter().filter(|c| matches!(c, MountCall::Unmount { .. })).count(),
        3
    );
    assert!(!root.exists());
    assert!(host.is_dir(), "a hostPath is never removed");
    // Tearing down twice is fine.
    teardown(&pod_dir, &mounter).await.unwrap();
}

#[tokio::test]
async fn unsupported_and_failing_volumes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        (
            Volume {
                nfs: Some(NFSVolumeSource {
                    server: "nas".into(),
                    path: "/x".into(),
                    read_only: None,
                }),
                ..volume("share")
            },
            "MountVolume.SetUp failed for volume \"share\" : unsupported volume type nfs"
                .to_owned(),
        ),
        (
            Volume {
                host_path: Some(HostPathVolumeSource {
                    path: file.to_string_lossy().into_owned(),
                    type_: Some("Directory".into()),
                }),
                ..volume("data")
            },
            format!(
                "MountVolume.SetUp failed for volume \"data\" : hostPath type check failed: {} is not a directory",
                file.display()
            ),
        ),
    ];
    for (volume, message) in cases {
        let pod = pod(vec![volume]);
        let error = prepare(&client(), &pod, dir.path(), &context(), &FakeMounter::new())
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), message);
    }
}

#[tokio::test]
async fn a_volume_left_mounted_stops_the_teardown() {
    #[derive(Debug)]
    struct StuckMounter;
    #[async_trait::async_trait]
    impl Mounter for StuckMounter {
        async fn mount_tmpfs(&self, _: &Path, _: Option<u64>) -> Result<(), MountError> {
            Ok(())
        }
        async fn unmount(&self, _: &Path) -> Result<(), MountError> {
            Ok(())
        }
        async fn is_mounted(&self, _: &Path) -> Result<bool, MountError> {
            Ok(true)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volumes/kubernetes.io~secret/creds");
    std::fs::create_dir_all(&volume).unwrap();
    let error = teardown(dir.path(), &StuckMounter).await.unwrap_err();
    assert!(error.to_string().contains("still mounted"), "{error}");
    assert!(volume.is_dir(), "nothing removed");
}

fn prepared(host_path: &Path, read_only: bool) -> PreparedVolume {
    PreparedVolume { host_path: host_path.into(), read_only, plugin: VolumePlugin::EmptyDir }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container { name: "app".into(), volume_mounts: Some(mounts), ..Default::default() }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
}

#[test]
fn mounts_for_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    let mut volumes = PodVolumes::new();
    volumes.insert("scratch", prepared(&scratch, false));
    volumes.insert("config", prepared(&config, true));
    let container = container(vec![
        mount("scratch", "/tmp"),
        VolumeMount {
            read_only: Some(true),
            mount_propagation: Some("HostToContainer".into()),
            ..mount("scratch", "/ro")
        },
        VolumeMount {
            sub_path: Some("logs/app".into()),
            mount_propagation: Some("Bidirectional".into()),
            ..mount("scratch", "/logs")
        },
        VolumeMount { sub_path_expr: Some("$(POD)".into()), ..mount("scratch", "/per-pod") },
        mount("config", "/etc/app"),
    ]);
    let env = [("POD".to_owned(), "web-1".to_owned())];
    let mounts = container_mounts_with_env(&pod(vec![]), &volumes, &container, &env).unwrap();
    let summary: Vec<(String, String, bool, i32)> = mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly, m.propagation))
        .collect();
    let canonical = std::fs::canonicalize(&scratch).unwrap();
    let private = MountPropagation::PropagationPrivate as i32;
    assert_eq!(
        summary,
        [
            ("/tmp".into(), scratch.display().to_string(), false, private),
            (
                "/ro".into(),
                scratch.display().to_string(),
                true,
                MountPropagation::PropagationHostToContainer as i32
            ),
            (
                "/logs".into(),
                canonical.join("logs/app").display().to_string(),
                false,
                MountPropagation::PropagationBidirectional as i32
            ),
            ("/per-pod".into(), canonical.join("web-1").display().to_string(), false, private),
            ("/etc/app".into(), config.display().to_string(), true, private),
        ]
    );
    assert!(scratch.join("logs/app").is_dir(), "the subPath was created");
    assert!(mounts.iter().all(|m| !m.selinux_relabel));
}

#[test]
fn bad_mounts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::os::unix::fs::symlink("/etc", scratch.join("escape")).unwrap();
    let mut volumes = PodVolumes::new();
    volumes.insert("scratch", prepared(&scratch, false));
    let check = |mount: VolumeMount, expected: &str| {
        let error = container_mounts(&pod(vec![]), &volumes, &container(vec![mount])).unwrap_err();
        assert_eq!(error.to_string(), expected);
    };
    check(mount("nope", "/x"), "cannot find volume \"nope\" to mount into container \"app\"");
    check(
        VolumeMount { sub_path: Some("/etc".into()), ..mount("scratch", "/x") },
        "error SubPath `/etc` must not be an absolute path",
    );
    check(
        VolumeMount { sub_path: Some("a/../../b".into()), ..mount("scratch", "/x") },
        "unable to provision SubPath `a/../../b`: must not contain '..'",
    );
    check(
        VolumeMount { sub_path: Some("escape/passwd".into()), ..mount("scratch", "/x") },
        "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"",
    );
    check(
        VolumeMount { mount_propagation: Some("Sideways".into()), ..mount("scratch", "/x") },
        "invalid MountPropagation mode: \"Sideways\"",
    );
    check(
        VolumeMount { sub_path_expr: Some("$(POD)/$(NODE)".into()), ..mount("scratch", "/x") },
        "missing value for NODE, POD",
    );
}

#[test]
fn claims_resolve_to_their_volumes() {
    let claim = |phase: &str, volume: Option<&str>| PersistentVolumeClaim {
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: volume.map(Into::into),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(bound_volume_name("c", &claim("Bound", Some("pv-1"))).unwrap(), "pv-1");
    assert_eq!(
        bound_volume_name("c", &claim("Pending", None)).unwrap_err().to_string(),
        "persistentvolumeclaim \"c\" is not bound"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_path = PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: dir.path().to_string_lossy().into_owned(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(persistent_volume_path("pv-1", &host_path).unwrap(), dir.path());
    let local = PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            local: Some(LocalVolumeSource { path: "/mnt/disks/1".into(), fs_type: None }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(persistent_volume_path("pv-2", &local).unwrap(), Path::new("/mnt/disks/1"));
    let other =
        PersistentVolume { spec: Some(PersistentVolumeSpec::default()), ..Default::default() };
    assert_eq!(
        persistent_volume_path("pv-3", &other).unwrap_err().to_string(),
        "persistentvolume \"pv-3\": unsupported volume source (only hostPath and local volumes can be used)"
    );
}

#[test]
fn tmpfs_sizes() {
    let with_limit = pod(vec![]);
    assert_eq!(tmpfs_size(&with_limit, 4 << 30, None), Some(256 << 20));
    assert_eq!(tmpfs_size(&with_limit, 4 << 30, Some(1 << 20)), Some(1 << 20));
    assert_eq!(
        tmpfs_size(&with_limit, 4 << 30, Some(1 << 40)),
        Some(256 << 20),
        "never above the pod's limit"
    );
    let mut without_limit = pod(vec![]);
    without_limit.spec.as_mut().unwrap().containers[0].resources = None;
    assert_eq!(tmpfs_size(&without_limit, 4 << 30, None), Some(4 << 30));
    assert_eq!(tmpfs_size(&without_limit, 0, None), None);
}
