//! Validation tables: typical objects pass; each broken one fails on upstream's field paths
//! with upstream's messages.

use super::super::testing::{
    check_invalid, check_update_invalid, check_valid, create_errors, update_errors,
};
use serde_json::{Value, json};

fn pod() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 80}],
                "env": [{"name": "MODE", "value": "prod"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"port": "http"}},
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    })
}

/// `pod()` with the value at `pointer` replaced.
fn pod_with(pointer: &str, value: Value) -> Value {
    with(pod(), pointer, value)
}

/// `object` with the value at `pointer` set (its parent must exist).
fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or_else(|| panic!("bad {pointer}"));
    match object.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}")) {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(list) => {
            list[key.parse::<usize>().unwrap_or_else(|_| panic!("{key}"))] = value
        }
        other => panic!("{parent} is {other}"),
    }
    object
}

#[test]
fn pods() {
    check_valid("v1", "Pod", pod());
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (pod_with("/spec/containers", json!([])), vec!["spec.containers"]),
        (pod_with("/spec/containers/0/name", json!("Web_1")), vec!["spec.containers[0].name"]),
        (pod_with("/spec/containers/0/image", json!("")), vec!["spec.containers[0].image"]),
        (pod_with("/spec/containers/0/image", json!(" nginx")), vec!["spec.containers[0].image"]),
        (
            pod_with("/spec/containers/0/ports/0/containerPort", json!(70000)),
            vec!["spec.containers[0].ports[0].containerPort"],
        ),
        (
            pod_with("/spec/containers/0/ports/0/name", json!("http-port-too-long")),
            vec!["spec.containers[0].ports[0].name"],
        ),
        (
            pod_with("/spec/containers/0/ports/0/protocol", json!("HTTP")),
            vec!["spec.containers[0].ports[0].protocol"],
        ),
        (
            pod_with("/spec/containers/0/env/0/name", json!("A=B")),
            vec!["spec.containers[0].env[0].name"],
        ),
        (
            pod_with("/spec/containers/0/volumeMounts/0/name", json!("other")),
            vec!["spec.containers[0].volumeMounts[0].name"],
        ),
        (
            pod_with("/spec/containers/0/resources/requests/cpu", json!("1")),
            vec!["spec.containers[0].resources.requests"],
        ),
        // The limit is copied to the missing request by the Pod defaults, so both fail.
        (
            pod_with("/spec/containers/0/resources/limits/memory", json!("lots")),
            vec![
                "spec.containers[0].resources.limits[memory]",
                "spec.containers[0].resources.requests[memory]",
            ],
        ),
        (
            pod_with("/spec/containers/0/resources/limits/gpu", json!("1")),
            vec![
                "spec.containers[0].resources.limits[gpu]",
                "spec.containers[0].resources.requests[gpu]",
            ],
        ),
        (pod_with("/spec/restartPolicy", json!("Sometimes")), vec!["spec.restartPolicy"]),
        (pod_with("/spec/volumes/0", json!({"name": "data"})), vec![]),
        // Upstream checks the host path first, so the empty dir is the extra one.
        (
            pod_with(
                "/spec/volumes/0",
                json!({"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}),
            ),
            vec!["spec.volumes[0].emptyDir", "spec.containers[0].volumeMounts[0].name"],
        ),
        (
            pod_with("/spec/volumes/0", json!({"name": "data", "secret": {}})),
            vec!["spec.volumes[0].secret.secretName", "spec.containers[0].volumeMounts[0].name"],
        ),
        (
            pod_with("/spec/containers/0/readinessProbe", json!({})),
            vec!["spec.containers[0].readinessProbe"],
        ),
        (
            pod_with(
                "/spec/containers/0/livenessProbe",
                json!({"exec": {"command": ["true"]}, "successThreshold": 2}),
            ),
            vec!["spec.containers[0].livenessProbe.successThreshold"],
        ),
    ];
    for (object, fields) in cases {
        check_invalid("v1", "Pod", object, &fields);
    }
    let mut duplicate = pod();
    duplicate["spec"]["initContainers"] = json!([{"name": "web", "image": "busybox"}]);
    check_invalid("v1", "Pod", duplicate, &["spec.initContainers[0].name"]);
    let mut node = pod();
    node["spec"]["nodeName"] = json!("Node_1");
    node["spec"]["serviceAccountName"] = json!("-sa");
    check_invalid("v1", "Pod", node, &["spec.serviceAccountName", "spec.nodeName"]);
    let mut dns = pod();
    dns["spec"]["dnsPolicy"] = json!("Sometimes");
    check_invalid("v1", "Pod", dns, &["spec.dnsPolicy"]);
}

#[test]
fn pod_messages_read_as_upstreams() {
    let errors = create_errors(
        "v1",
        "Pod",
        pod_with("/spec/containers/0/resources/requests/cpu", json!("1")),
    );
    assert_eq!(
        errors,
        [
            "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 200m"
        ]
    );
    let errors = create_errors(
        "v1",
        "Pod",
        pod_with("/spec/containers/0/volumeMounts/0/name", json!("other")),
    );
    assert_eq!(errors, ["spec.containers[0].volumeMounts[0].name: Not found: \"other\""]);
    let errors =
        create_errors("v1", "Pod", pod_with("/spec/containers/0/ports/0/protocol", json!("HTTP")));
    assert_eq!(
        errors,
        [
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        ]
    );
    let errors =
        create_errors("v1", "Pod", pod_with("/spec/containers/0/ports/0/containerPort", json!(0)));
    assert_eq!(errors, ["spec.containers[0].ports[0].containerPort: Required value"]);
}

#[test]
fn pod_updates() {
    let mut image = pod();
    image["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    image["spec"]["activeDeadlineSeconds"] = json!(30);
    image["spec"]["tolerations"] = json!([{"key": "a", "operator": "Exists"}]);
    check_update_invalid("v1", "Pod", pod(), image, &[]);
    let mut port = pod();
    port["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
    let errors = update_errors("v1", "Pod", pod(), port);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "spec");
    assert!(
        errors[0].detail.starts_with(
            "pod updates may not change fields other than `spec.containers[*].image`,"
        ),
        "{}",
        errors[0].detail
    );
    let more = with(
        pod(),
        "/spec/containers",
        json!([pod()["spec"]["containers"][0], {"name": "b", "image": "b"}]),
    );
    check_update_invalid("v1", "Pod", pod(), more, &["spec.containers"]);
    let renamed = with(pod(), "/metadata/name", json!("other"));
    check_update_invalid("v1", "Pod", pod(), renamed, &["metadata.name"]);
}

fn deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        },
    })
}

#[test]
fn replicated_workloads() {
    for kind in ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"] {
        check_valid("apps/v1", kind, deployment());
        check_invalid(
            "apps/v1",
            kind,
            with(deployment(), "/spec/template/metadata/labels/app", json!("db")),
            &["spec.template.metadata.labels"],
        );
        check_invalid(
            "apps/v1",
            kind,
            with(deployment(), "/spec/template/spec/restartPolicy", json!("Never")),
            &["spec.template.spec.restartPolicy"],
        );
        check_invalid(
            "apps/v1",
            kind,
            with(deployment(), "/spec/template/spec/containers/0/name", json!("")),
            &["spec.template.spec.containers[0].name"],
        );
    }
    for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
        check_invalid(
            "apps/v1",
            kind,
            with(deployment(), "/spec/replicas", json!(-1)),
            &["spec.replicas"],
        );
        let mut missing = deployment();
        missing["spec"].as_object_mut().map(|spec| spec.remove("selector"));
        check_invalid(
            "apps/v1",
            kind,
            missing,
            &["spec.selector", "spec.template.metadata.labels"],
        );
        check_invalid(
            "apps/v1",
            kind,
            with(deployment(), "/spec/selector", json!({})),
            &["spec.selector"],
        );
    }
    let errors = create_errors(
        "apps/v1",
        "Deployment",
        with(deployment(), "/spec/template/metadata/labels/app", json!("db")),
    );
    assert_eq!(
        errors,
        [
            "spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"
        ]
    );
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    check_invalid(
        "apps/v1",
        "Deployment",
        with(deployment(), "/spec/strategy", strategy),
        &["spec.strategy.rollingUpdate.maxUnavailable"],
    );
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "120%"}});
    check_invalid(
        "apps/v1",
        "Deployment",
        with(deployment(), "/spec/strategy", strategy),
        &["spec.strategy.rollingUpdate.maxUnavailable"],
    );
    check_invalid(
        "apps/v1",
        "Deployment",
        with(deployment(), "/spec/strategy", json!({"type": "BlueGreen"})),
        &["spec.strategy"],
    );
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}});
    check_invalid(
        "apps/v1",
        "DaemonSet",
        with(deployment(), "/spec/updateStrategy", strategy),
        &["spec.updateStrategy.rollingUpdate.maxSurge"],
    );
    check_invalid(
        "apps/v1",
        "StatefulSet",
        with(deployment(), "/spec/podManagementPolicy", json!("Random")),
        &["spec.podManagementPolicy"],
    );
    // Claim templates count as volumes for the containers' mounts.
    let mut with_claims = with(
        deployment(),
        "/spec/template/spec/containers/0/volumeMounts",
        json!([{"name": "data", "mountPath": "/d"}]),
    );
    with_claims["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    check_valid("apps/v1", "StatefulSet", with_claims);
}

#[test]
fn replicated_workload_updates() {
    for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
        let mut new = with(deployment(), "/spec/selector/matchLabels/tier", json!("a"));
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("a");
        check_update_invalid("apps/v1", kind, deployment(), new, &["spec.selector"]);
        check_update_invalid(
            "apps/v1",
            kind,
            deployment(),
            with(deployment(), "/spec/template/spec/containers/0/image", json!("nginx:2")),
            &[],
        );
    }
    check_update_invalid(
        "apps/v1",
        "StatefulSet",
        deployment(),
        with(deployment(), "/spec/replicas", json!(5)),
        &[],
    );
    let errors = update_errors(
        "apps/v1",
        "StatefulSet",
        deployment(),
        with(deployment(), "/spec/serviceName", json!("other")),
    );
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

#[test]
fn replication_controllers_and_templates() {
    let rc = json!({"metadata": {"name": "rc", "namespace": "d"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    check_valid("v1", "ReplicationController", rc.clone());
    check_invalid(
        "v1",
        "ReplicationController",
        with(rc.clone(), "/spec/selector", json!({"app": "db"})),
        &["spec.template.metadata.labels"],
    );
    let template = json!({"metadata": {"name": "t", "namespace": "d"}, "template": {"spec": {"containers": [{"name": "web"}]}}});
    check_invalid("v1", "PodTemplate", template, &["template.spec.containers[0].image"]);
}

fn job() -> Value {
    json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
    })
}

#[test]
fn jobs() {
    check_valid("batch/v1", "Job", job());
    let errors = create_errors(
        "batch/v1",
        "Job",
        with(job(), "/spec/template/spec/restartPolicy", json!(null)),
    );
    assert_eq!(
        errors,
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ]
    );
    check_invalid(
        "batch/v1",
        "Job",
        with(job(), "/spec/parallelism", json!(-1)),
        &["spec.parallelism"],
    );
    let mut wrong = job();
    wrong["spec"]["template"]["metadata"] = json!({"labels": {"controller-uid": "other"}});
    check_invalid("batch/v1", "Job", wrong, &["spec.template.metadata.labels[controller-uid]"]);
    let manual = json!({"metadata": {"name": "m", "namespace": "d", "uid": "u"}, "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
    check_invalid("batch/v1", "Job", manual, &["spec.template.metadata.labels"]);
    check_update_invalid(
        "batch/v1",
        "Job",
        job(),
        with(job(), "/spec/template/spec/containers/0/image", json!("perl:2")),
        &["spec.template"],
    );
    check_update_invalid(
        "batch/v1",
        "Job",
        job(),
        with(job(), "/spec/completions", json!(3)),
        &["spec.completions"],
    );
    check_update_invalid("batch/v1", "Job", job(), with(job(), "/spec/suspend", json!(true)), &[]);
}

fn cron_job() -> Value {
    json!({
        "metadata": {"name": "report", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "r", "image": "busybox"}]}}}}},
    })
}

#[test]
fn cron_jobs() {
    check_valid("batch/v1", "CronJob", cron_job());
    check_valid("batch/v1", "CronJob", with(cron_job(), "/spec/schedule", json!("@hourly")));
    check_invalid(
        "batch/v1",
        "CronJob",
        with(cron_job(), "/spec/schedule", json!("")),
        &["spec.schedule"],
    );
    let errors =
        create_errors("batch/v1", "CronJob", with(cron_job(), "/spec/schedule", json!("* * *")));
    assert_eq!(
        errors,
        ["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"]
    );
    check_invalid(
        "batch/v1",
        "CronJob",
        with(cron_job(), "/metadata/name", json!("a".repeat(53))),
        &["metadata.name"],
    );
    check_invalid(
        "batch/v1",
        "CronJob",
        with(cron_job(), "/spec/concurrencyPolicy", json!("Sometimes")),
        &["spec.concurrencyPolicy"],
    );
    let mut zone = cron_job();
    zone["spec"]["timeZone"] = json!("Local");
    check_invalid("batch/v1", "CronJob", zone, &["spec.timeZone"]);
    check_invalid(
        "batch/v1",
        "CronJob",
        with(cron_job(), "/spec/jobTemplate/spec/template/spec/restartPolicy", json!("Always")),
        &["spec.jobTemplate.spec.template.spec.restartPolicy"],
    );
}

fn service() -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

#[test]
fn services() {
    check_valid("v1", "Service", service());
    check_valid(
        "v1",
        "Service",
        json!({"metadata": {"name": "db", "namespace": "d"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
    );
    check_valid(
        "v1",
        "Service",
        json!({"metadata": {"name": "ext", "namespace": "d"}, "spec": {"type": "ExternalName", "externalName": "example.com."}}),
    );
    check_valid(
        "v1",
        "Service",
        json!({"metadata": {"name": "np", "namespace": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
    );
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (with(service(), "/spec/ports", json!([])), vec!["spec.ports"]),
        (with(service(), "/spec/ports/0/port", json!(0)), vec!["spec.ports[0].port"]),
        (
            with(service(), "/spec/ports/0/targetPort", json!(70000)),
            vec!["spec.ports[0].targetPort"],
        ),
        (with(service(), "/spec/ports/0/protocol", json!("ICMP")), vec!["spec.ports[0].protocol"]),
        (
            with(service(), "/spec/ports", json!([{"port": 80}, {"port": 81}])),
            vec!["spec.ports[0].name", "spec.ports[1].name"],
        ),
        (
            with(
                service(),
                "/spec/ports",
                json!([{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
            ),
            vec!["spec.ports[1].name"],
        ),
        (
            with(
                service(),
                "/spec/ports",
                json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
            ),
            vec!["spec.ports[1]"],
        ),
        (with(service(), "/spec/type", json!("Magic")), vec!["spec.type"]),
        (with(service(), "/spec/ports/0/nodePort", json!(30080)), vec!["spec.ports[0].nodePort"]),
        (with(service(), "/spec/sessionAffinity", json!("Sticky")), vec!["spec.sessionAffinity"]),
        (with(service(), "/spec/selector", json!({"app": "-x"})), vec!["spec.selector"]),
        (with(service(), "/metadata/name", json!("1web")), vec!["metadata.name"]),
    ];
    for (object, fields) in cases {
        check_invalid("v1", "Service", object, &fields);
    }
    let node_port = json!({"metadata": {"name": "np", "namespace": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}]}});
    check_invalid("v1", "Service", node_port, &["spec.ports[0].nodePort"]);
    check_invalid(
        "v1",
        "Service",
        json!({"metadata": {"name": "e", "namespace": "d"}, "spec": {"type": "ExternalName"}}),
        &["spec.externalName"],
    );
    let old = with(service(), "/spec/clusterIP", json!("10.0.0.7"));
    check_update_invalid(
        "v1",
        "Service",
        old.clone(),
        with(service(), "/spec/clusterIP", json!("10.0.0.8")),
        &["spec.clusterIPs[0]"],
    );
    check_update_invalid("v1", "Service", old, service(), &[]);
}

#[test]
fn config_maps_and_secrets() {
    let config = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"game.properties": "x"}, "binaryData": {"blob": "AAE="}});
    check_valid("v1", "ConfigMap", config.clone());
    check_invalid(
        "v1",
        "ConfigMap",
        with(config.clone(), "/data", json!({"bad key": "x"})),
        &["data[bad key]"],
    );
    check_invalid(
        "v1",
        "ConfigMap",
        with(config.clone(), "/data", json!({"blob": "x"})),
        &["data[blob]"],
    );
    let huge = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(1024 * 1024 + 1)}});
    assert_eq!(
        create_errors("v1", "ConfigMap", huge),
        [": Too long: may not be more than 1048576 bytes"]
    );
    let frozen = with(config.clone(), "/immutable", json!(true));
    let changed = with(frozen.clone(), "/data/game.properties", json!("y"));
    check_update_invalid("v1", "ConfigMap", frozen, changed, &["data"]);
    check_update_invalid(
        "v1",
        "ConfigMap",
        config.clone(),
        with(config, "/data/game.properties", json!("y")),
        &[],
    );

    let secret =
        json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"password": "c2VjcmV0"}});
    check_valid("v1", "Secret", secret.clone());
    check_invalid(
        "v1",
        "Secret",
        with(secret.clone(), "/data/password", json!("not base64!")),
        &["data[password]"],
    );
    let tls = json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}});
    check_invalid("v1", "Secret", tls, &["data[tls.key]"]);
    let docker = json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {}});
    check_invalid("v1", "Secret", docker, &["data[.dockerconfigjson]"]);
    let docker = json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}});
    check_valid("v1", "Secret", docker);
    let basic =
        json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/basic-auth"});
    check_invalid("v1", "Secret", basic, &["data[username]", "data[password]"]);
    let ssh = json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/ssh-auth", "data": {}});
    check_invalid("v1", "Secret", ssh, &["data[ssh-privatekey]"]);
    check_update_invalid(
        "v1",
        "Secret",
        secret.clone(),
        with(secret, "/type", json!("kubernetes.io/tls")),
        &["type", "data[tls.crt]", "data[tls.key]"],
    );
}

#[test]
fn namespaces_nodes_and_service_accounts() {
    check_valid("v1", "Namespace", json!({"metadata": {"name": "team-a"}}));
    check_invalid("v1", "Namespace", json!({"metadata": {"name": "Team"}}), &["metadata.name"]);
    check_invalid(
        "v1",
        "Namespace",
        json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}),
        &["spec.finalizers"],
    );
    let node = json!({"metadata": {"name": "node-1"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
    check_valid("v1", "Node", node.clone());
    check_invalid(
        "v1",
        "Node",
        with(node.clone(), "/spec/taints/0/effect", json!("Never")),
        &["metadata.taints[0].effect"],
    );
    check_invalid(
        "v1",
        "Node",
        with(
            node.clone(),
            "/spec/taints",
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]),
        ),
        &["metadata.taints[1]"],
    );
    let with_cidr = with(node.clone(), "/spec/podCIDRs", json!(["10.0.0.0/24"]));
    check_update_invalid(
        "v1",
        "Node",
        with_cidr.clone(),
        with(with_cidr, "/spec/podCIDRs", json!(["10.0.1.0/24"])),
        &["spec.podCIDRs"],
    );
    check_valid("v1", "ServiceAccount", json!({"metadata": {"name": "builder", "namespace": "d"}}));
    check_invalid(
        "v1",
        "ServiceAccount",
        json!({"metadata": {"name": "Builder", "namespace": "d"}}),
        &["metadata.name"],
    );
}

fn claim() -> Value {
    json!({"metadata": {"name": "data", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[test]
fn volumes_and_claims() {
    check_valid("v1", "PersistentVolumeClaim", claim());
    check_invalid(
        "v1",
        "PersistentVolumeClaim",
        with(claim(), "/spec/accessModes", json!([])),
        &["spec.accessModes"],
    );
    check_invalid(
        "v1",
        "PersistentVolumeClaim",
        with(claim(), "/spec/accessModes", json!(["ReadMostly"])),
        &["spec.accessModes"],
    );
    check_invalid(
        "v1",
        "PersistentVolumeClaim",
        with(claim(), "/spec/resources", json!({})),
        &["spec.resources[storage]"],
    );
    check_invalid(
        "v1",
        "PersistentVolumeClaim",
        with(claim(), "/spec/resources/requests/storage", json!("0")),
        &["spec.resources[storage]"],
    );
    check_update_invalid(
        "v1",
        "PersistentVolumeClaim",
        claim(),
        with(claim(), "/spec/storageClassName", json!("fast")),
        &["spec"],
    );
    check_update_invalid(
        "v1",
        "PersistentVolumeClaim",
        claim(),
        with(claim(), "/spec/volumeName", json!("pv-1")),
        &[],
    );
    let volume = json!({"metadata": {"name": "pv-1"}, "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"}, "hostPath": {"path": "/data"}}});
    check_valid("v1", "PersistentVolume", volume.clone());
    let mut no_source = volume.clone();
    no_source["spec"].as_object_mut().map(|spec| spec.remove("hostPath"));
    check_invalid("v1", "PersistentVolume", no_source, &["spec"]);
    check_invalid(
        "v1",
        "PersistentVolume",
        with(volume.clone(), "/spec/capacity", json!({})),
        &["spec.capacity"],
    );
    check_invalid(
        "v1",
        "PersistentVolume",
        with(volume.clone(), "/spec/persistentVolumeReclaimPolicy", json!("Keep")),
        &["spec.persistentVolumeReclaimPolicy"],
    );
    check_update_invalid(
        "v1",
        "PersistentVolume",
        volume.clone(),
        with(volume, "/spec/hostPath/path", json!("/other")),
        &["spec.persistentvolumesource"],
    );
}

#[test]
fn rbac() {
    let role = json!({"metadata": {"name": "reader", "namespace": "d"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    check_valid("rbac.authorization.k8s.io/v1", "Role", role.clone());
    check_invalid(
        "rbac.authorization.k8s.io/v1",
        "Role",
        with(role.clone(), "/rules/0/verbs", json!([])),
        &["rules[0].verbs"],
    );
    check_invalid(
        "rbac.authorization.k8s.io/v1",
        "Role",
        json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [{"verbs": ["get"]}]}),
        &["rules[0].apiGroups", "rules[0].resources"],
    );
    check_valid(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        json!({"metadata": {"name": "system:metrics"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
    );
    let binding = json!({"metadata": {"name": "read", "namespace": "d"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}, "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "jane"}]});
    check_valid("rbac.authorization.k8s.io/v1", "RoleBinding", binding.clone());
    check_invalid(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        with(
            binding.clone(),
            "/roleRef",
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role"}),
        ),
        &["roleRef.name"],
    );
    check_invalid(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        with(binding.clone(), "/subjects/0/kind", json!("Robot")),
        &["subjects[0].kind"],
    );
    check_update_invalid(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        binding.clone(),
        with(binding, "/roleRef/name", json!("writer")),
        &["roleRef"],
    );
    let cluster_binding = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
    check_invalid(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        cluster_binding,
        &["roleRef.kind", "subjects[0].namespace"],
    );
}

#[test]
fn other_kinds() {
    let lease =
        json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}});
    check_invalid("coordination.k8s.io/v1", "Lease", lease, &["spec.leaseDurationSeconds"]);
    check_valid(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        json!({"metadata": {"name": "high"}, "value": 1000}),
    );
    check_invalid(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        json!({"metadata": {"name": "high"}}),
        &["value"],
    );
    check_invalid(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        json!({"metadata": {"name": "huge"}, "value": 2_000_000_000}),
        &["value"],
    );
    let ingress = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {"rules": [{"host": "example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
    check_valid("networking.k8s.io/v1", "Ingress", ingress.clone());
    check_invalid(
        "networking.k8s.io/v1",
        "Ingress",
        with(ingress.clone(), "/spec/rules/0/http/paths/0/pathType", json!(null)),
        &["spec.rules[0].http.paths[0].pathType"],
    );
    check_invalid(
        "networking.k8s.io/v1",
        "Ingress",
        with(ingress, "/spec/rules/0/http/paths/0/backend/service/port", json!({})),
        &["spec.rules[0].http.paths[0].backend.service.port"],
    );
    let policy = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]}});
    check_valid("networking.k8s.io/v1", "NetworkPolicy", policy.clone());
    check_invalid(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        with(policy, "/spec/ingress/0/ports/0/port", json!(0)),
        &["spec.ingress[0].ports[0].port"],
    );
    let hpa = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 5}});
    check_valid("autoscaling/v2", "HorizontalPodAutoscaler", hpa.clone());
    check_invalid(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        with(hpa.clone(), "/spec/maxReplicas", json!(1)),
        &["spec.maxReplicas"],
    );
    check_invalid(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        with(hpa, "/spec/scaleTargetRef", json!({})),
        &["spec.scaleTargetRef.kind", "spec.scaleTargetRef.name"],
    );
    let budget = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    check_valid("policy/v1", "PodDisruptionBudget", budget.clone());
    check_invalid(
        "policy/v1",
        "PodDisruptionBudget",
        with(budget, "/spec/maxUnavailable", json!("50%")),
        &["spec"],
    );
}
