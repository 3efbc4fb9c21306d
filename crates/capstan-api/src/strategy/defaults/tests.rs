//! Defaults, kind by kind, against what kube-apiserver v1.33 stores for the same input.

use super::super::testing::{check_defaults, created};
use serde_json::{Value, json};

/// The defaults of a container named `name` running `image`, as in a template.
fn container(name: &str, image: &str, pull: &str) -> Value {
    json!({
        "name": name, "image": image, "imagePullPolicy": pull,
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "resources": {},
    })
}

/// The defaults of a template spec around `containers`.
fn template_spec(containers: Value, restart_policy: &str) -> Value {
    json!({
        "containers": containers,
        "dnsPolicy": "ClusterFirst", "restartPolicy": restart_policy, "securityContext": {},
        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
    })
}

#[test]
fn pod() {
    check_defaults(
        "v1",
        "Pod",
        json!({"spec": {"hostNetwork": true, "containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "0.5", "memory": "1Gi"}, "requests": {"cpu": "0.25"}},
            "livenessProbe": {"httpGet": {"port": 80}},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/quit"}}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        }], "volumes": [
            {"name": "a"},
            {"name": "b", "secret": {"secretName": "s"}},
            {"name": "c", "configMap": {"name": "c"}},
            {"name": "d", "hostPath": {"path": "/d"}},
            {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
        ]}}),
        json!({"spec": {"hostNetwork": true, "containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80, "protocol": "TCP", "hostPort": 80}],
            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "1Gi"}},
            "livenessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/quit", "scheme": "HTTP"}}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName", "apiVersion": "v1"}}}],
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        }], "volumes": [
            {"name": "a", "emptyDir": {}},
            {"name": "b", "secret": {"secretName": "s", "defaultMode": 420}},
            {"name": "c", "configMap": {"name": "c", "defaultMode": 420}},
            {"name": "d", "hostPath": {"path": "/d", "type": ""}},
            {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}], "defaultMode": 420}},
        ],
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
        "enableServiceLinks": true}}),
    );
}

#[test]
fn image_pull_policies() {
    for (image, policy) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("registry:5000/team/nginx", "Always"),
        ("registry:5000/team/nginx:1.2", "IfNotPresent"),
        ("nginx@sha256:abc", "IfNotPresent"),
        ("nginx:latest@sha256:abc", "Always"),
    ] {
        let pod = created(
            "v1",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}),
        );
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], policy, "{image}");
    }
}

#[test]
fn workloads() {
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
    let defaulted = json!({"metadata": {"labels": {"app": "web"}}, "spec": template_spec(json!([container("web", "nginx", "Always")]), "Always")});
    let selector = json!({"matchLabels": {"app": "web"}});
    check_defaults(
        "apps/v1",
        "Deployment",
        json!({"spec": {"selector": selector, "template": template}}),
        json!({"spec": {"selector": selector, "template": defaulted, "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}}),
    );
    check_defaults(
        "apps/v1",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}, "template": template}}),
        json!({"spec": {"strategy": {"type": "Recreate"}, "template": defaulted, "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}}),
    );
    check_defaults(
        "apps/v1",
        "ReplicaSet",
        json!({"spec": {"template": template}}),
        json!({"spec": {"template": defaulted, "replicas": 1}}),
    );
    check_defaults(
        "apps/v1",
        "StatefulSet",
        json!({"spec": {"template": template, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        json!({"spec": {"template": defaulted,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}],
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "replicas": 1, "revisionHistoryLimit": 10}}),
    );
    check_defaults(
        "apps/v1",
        "DaemonSet",
        json!({"spec": {"template": template}}),
        json!({"spec": {"template": defaulted,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10}}),
    );
    check_defaults(
        "v1",
        "ReplicationController",
        json!({"metadata": {"name": "rc"}, "spec": {"template": template}}),
        json!({"metadata": {"name": "rc", "labels": {"app": "web"}}, "spec": {"template": defaulted, "selector": {"app": "web"}, "replicas": 1}}),
    );
    check_defaults(
        "v1",
        "PodTemplate",
        json!({"template": template}),
        json!({"template": defaulted}),
    );
}

#[test]
fn jobs_and_cron_jobs() {
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}});
    let defaulted_spec =
        template_spec(json!([container("pi", "perl:5.34", "IfNotPresent")]), "Never");
    check_defaults(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": template}}),
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {
            "template": {"spec": defaulted_spec, "metadata": {"labels": {
                "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u-1", "job-name": "pi"}}},
            "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}}}),
    );
    // Parallelism alone leaves completions unset; a manual selector generates nothing; the
    // template's labels become the Job's.
    let job = created(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "a", "uid": "u"}, "spec": {
        "parallelism": 3, "manualSelector": true, "selector": {"matchLabels": {"x": "y"}},
        "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": []}}}}),
    );
    assert_eq!(job["spec"].get("completions"), None);
    assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"x": "y"}}));
    assert_eq!(job["metadata"]["labels"], json!({"x": "y"}));
    // A template without a restart policy gets Always, which Job validation then refuses.
    let job = created(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Always");
    check_defaults(
        "batch/v1",
        "CronJob",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": defaulted_spec}}},
            "concurrencyPolicy": "Allow", "suspend": false, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}}),
    );
}

#[test]
fn core_kinds() {
    check_defaults(
        "v1",
        "Service",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        json!({"spec": {"selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
            "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack"}}),
    );
    check_defaults(
        "v1",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 443}]}}),
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
            "ports": [{"port": 443, "protocol": "TCP", "targetPort": 443}],
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
            "allocateLoadBalancerNodePorts": true, "ipFamilyPolicy": "SingleStack"}}),
    );
    check_defaults(
        "v1",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        json!({"spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}}),
    );
    check_defaults(
        "v1",
        "Secret",
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"user": "admin"}}),
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ==", "user": "YWRtaW4="}, "type": "Opaque"}),
    );
    check_defaults(
        "v1",
        "PersistentVolumeClaim",
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1.5Gi"}}}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1536Mi"}}, "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
    );
    check_defaults(
        "v1",
        "PersistentVolume",
        json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}}),
        json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}, "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
    );
    check_defaults(
        "v1",
        "LimitRange",
        json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}, "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}}]}}),
    );
    check_defaults(
        "v1",
        "Endpoints",
        json!({"subsets": [{"ports": [{"port": 80}]}]}),
        json!({"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
    );
}

#[test]
fn other_kinds() {
    check_defaults(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        json!({"spec": {"maxReplicas": 5, "minReplicas": 1,
            "behavior": {
                "scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}], "stabilizationWindowSeconds": 60},
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
    );
    check_defaults(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 5}}),
        json!({"spec": {"maxReplicas": 5, "minReplicas": 1}}),
    );
    check_defaults(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        json!({"subjects": [{"kind": "ServiceAccount", "name": "a"}, {"kind": "User", "name": "b"}]}),
        json!({"subjects": [{"kind": "ServiceAccount", "name": "a", "apiGroup": ""}, {"kind": "User", "name": "b", "apiGroup": "rbac.authorization.k8s.io"}]}),
    );
    check_defaults(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
        json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}], "policyTypes": ["Ingress", "Egress"]}}),
    );
    check_defaults(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        json!({"value": 10}),
        json!({"value": 10, "preemptionPolicy": "PreemptLowerPriority"}),
    );
    check_defaults(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        json!({"ports": [{"port": 80}]}),
        json!({"ports": [{"port": 80, "name": "", "protocol": "TCP"}]}),
    );
}
