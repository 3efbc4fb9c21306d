//! Test helpers shared by the strategy's test tables: each runs the public functions in the
//! order the API server calls them and compares with what upstream answers.

use super::{
    apply_defaults, prepare_for_create, prepare_for_update, validate_create, validate_update,
};
use crate::registry::{ResourceType, find_kind};
use serde_json::Value;

/// The resource type of `apiVersion` + `kind`.
pub(crate) fn resource(api_version: &str, kind: &str) -> &'static ResourceType {
    find_kind(api_version, kind).unwrap_or_else(|| panic!("no {api_version} {kind}"))
}

/// The object as a create stores it: prepared, then defaulted.
pub(crate) fn created(api_version: &str, kind: &str, mut object: Value) -> Value {
    let resource = resource(api_version, kind);
    prepare_for_create(resource, &mut object);
    apply_defaults(resource, &mut object);
    object
}

/// The object as an update of `old` stores it: prepared, then defaulted.
pub(crate) fn updated(api_version: &str, kind: &str, old: &Value, mut object: Value) -> Value {
    let resource = resource(api_version, kind);
    prepare_for_update(resource, &mut object, old);
    apply_defaults(resource, &mut object);
    object
}

/// `apply_defaults` alone turns `input` into `expected`.
pub(crate) fn check_defaults(api_version: &str, kind: &str, mut input: Value, expected: Value) {
    apply_defaults(resource(api_version, kind), &mut input);
    assert_eq!(input, expected, "defaults of {kind}");
}

/// The errors of creating `object`, rendered as upstream prints causes.
pub(crate) fn create_errors(api_version: &str, kind: &str, object: Value) -> Vec<String> {
    let object = created(api_version, kind, object);
    validate_create(resource(api_version, kind), &object).iter().map(ToString::to_string).collect()
}

/// Creating `object` passes validation.
pub(crate) fn check_valid(api_version: &str, kind: &str, object: Value) {
    let errors = create_errors(api_version, kind, object);
    assert!(errors.is_empty(), "{kind} should be valid: {errors:#?}");
}

/// Creating `object` fails on exactly the `fields` given, in order.
pub(crate) fn check_invalid(api_version: &str, kind: &str, object: Value, fields: &[&str]) {
    let object = created(api_version, kind, object);
    let errors = validate_create(resource(api_version, kind), &object);
    let actual: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        actual,
        fields,
        "{kind}: {:#?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

/// Updating the created `old` to `new` fails on exactly the `fields` given.
pub(crate) fn check_update_invalid(
    api_version: &str,
    kind: &str,
    old: Value,
    new: Value,
    fields: &[&str],
) {
    let errors = update_errors(api_version, kind, old, new);
    let actual: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        actual,
        fields,
        "{kind} update: {errors:#?}",
        errors = errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

/// The errors of updating the created `old` to `new`.
pub(crate) fn update_errors(
    api_version: &str,
    kind: &str,
    old: Value,
    new: Value,
) -> Vec<crate::FieldError> {
    let old = created(api_version, kind, old);
    let new = updated(api_version, kind, &old, new);
    validate_update(resource(api_version, kind), &new, &old)
}

#[cfg(test)]
mod tests {
    use super::super::{field_values, selectable_fields};
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running"},
        })
    }

    #[test]
    fn create_resets_status_and_sets_generation() {
        let cases = [
            ("v1", "Pod", pod(), json!({"phase": "Pending", "qosClass": "BestEffort"}), Some(1)),
            (
                "v1",
                "Namespace",
                json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}),
                json!({"phase": "Active"}),
                None,
            ),
            (
                "v1",
                "Service",
                json!({"metadata": {"name": "a"}, "spec": {}, "status": {"x": 1}}),
                json!({"loadBalancer": {}}),
                None,
            ),
            (
                "apps/v1",
                "Deployment",
                json!({"metadata": {"name": "a"}, "status": {"replicas": 3}}),
                json!({}),
                Some(1),
            ),
            (
                "apps/v1",
                "ReplicaSet",
                json!({"metadata": {"name": "a"}}),
                json!({"replicas": 0}),
                Some(1),
            ),
            (
                "apps/v1",
                "DaemonSet",
                json!({"metadata": {"name": "a"}}),
                json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}),
                Some(1),
            ),
            (
                "batch/v1",
                "Job",
                json!({"metadata": {"name": "a"}, "status": {"succeeded": 1}}),
                json!({}),
                Some(1),
            ),
            (
                "v1",
                "PersistentVolumeClaim",
                json!({"metadata": {"name": "a"}, "status": {"phase": "Bound"}}),
                json!({"phase": "Pending"}),
                None,
            ),
            (
                "policy/v1",
                "PodDisruptionBudget",
                json!({"metadata": {"name": "a"}}),
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
                Some(1),
            ),
            (
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                json!({"metadata": {"name": "a"}}),
                json!({"desiredReplicas": 0}),
                None,
            ),
        ];
        for (api_version, kind, object, status, generation) in cases {
            let object = created(api_version, kind, object);
            assert_eq!(object["status"], status, "{kind}");
            assert_eq!(
                object["metadata"].get("generation").and_then(Value::as_i64),
                generation,
                "{kind}"
            );
        }
    }

    #[test]
    fn nodes_keep_their_status_and_config_maps_have_none() {
        let node = created(
            "v1",
            "Node",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}}),
        );
        assert_eq!(node["status"], json!({"capacity": {"cpu": "2"}, "allocatable": {"cpu": "2"}}));
        let map =
            created("v1", "ConfigMap", json!({"metadata": {"name": "c"}, "data": {"a": "b"}}));
        assert_eq!(map, json!({"metadata": {"name": "c"}, "data": {"a": "b"}}));
    }

    #[test]
    fn pod_qos_classes() {
        let with = |resources: Value| {
            let mut pod = pod();
            pod["spec"]["containers"][0]["resources"] = resources;
            created("v1", "Pod", pod)["status"]["qosClass"].clone()
        };
        assert_eq!(with(json!({})), "BestEffort");
        assert_eq!(with(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(with(json!({"limits": {"cpu": "1", "memory": "1Gi"}})), "Guaranteed");
        assert_eq!(
            with(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
            "Burstable"
        );
        assert_eq!(with(json!({"requests": {"ephemeral-storage": "1Gi"}})), "BestEffort");
    }

    #[test]
    fn gated_pods_start_unscheduled() {
        let mut gated = pod();
        gated["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
        let status = &created("v1", "Pod", gated)["status"];
        assert_eq!(status["conditions"][0]["reason"], "SchedulingGated");
    }

    #[test]
    fn update_keeps_status_and_counts_generation() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        });
        let mut old = created("apps/v1", "Deployment", deployment.clone());
        old["status"] = json!({"replicas": 1});
        let mut same_spec = deployment.clone();
        same_spec["metadata"]["labels"] = json!({"new": "label"});
        same_spec["status"] = json!({"replicas": 9});
        let same_spec = updated("apps/v1", "Deployment", &old, same_spec);
        assert_eq!(same_spec["status"], json!({"replicas": 1}));
        assert_eq!(same_spec["metadata"]["generation"], 1);
        let mut scaled = deployment;
        scaled["spec"]["replicas"] = json!(3);
        let scaled = updated("apps/v1", "Deployment", &old, scaled);
        assert_eq!(scaled["metadata"]["generation"], 2);
        // Kinds that do not track generation keep the stored one (none here).
        let config =
            created("v1", "ConfigMap", json!({"metadata": {"name": "c", "generation": 5}}));
        let next = updated(
            "v1",
            "ConfigMap",
            &config,
            json!({"metadata": {"name": "c", "generation": 7}, "data": {"a": "b"}}),
        );
        assert_eq!(next["metadata"]["generation"], 5);
    }

    #[test]
    fn service_updates_keep_allocated_values() {
        let old = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}], "selector": {"app": "web"}},
        });
        let new = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "web"}}});
        let new = updated("v1", "Service", &old, new);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.5"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn namespaces_get_the_kubernetes_finalizer_once() {
        let namespace = created(
            "v1",
            "Namespace",
            json!({"metadata": {"name": "team"}, "spec": {"finalizers": ["kubernetes"]}}),
        );
        assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(namespace["metadata"]["labels"], json!({"kubernetes.io/metadata.name": "team"}));
        let fresh = created("v1", "Namespace", json!({"metadata": {"name": "team"}}));
        assert_eq!(fresh["spec"]["finalizers"], json!(["kubernetes"]));
    }

    fn check_fields(api_version: &str, kind: &str, object: Value, expected: &[(&str, &str)]) {
        let resource = resource(api_version, kind);
        let values = field_values(resource, &object);
        let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, selectable_fields(resource), "{kind}");
        for (field, value) in expected {
            let actual = values.iter().find(|(name, _)| name == field).map(|(_, v)| v.as_str());
            assert_eq!(actual, Some(*value), "{kind} {field}");
        }
    }

    #[test]
    fn field_selectors_render_as_upstream() {
        let mut running = pod();
        running["spec"]["nodeName"] = json!("node-1");
        running["status"]["podIPs"] = json!([{"ip": "10.1.0.4"}]);
        check_fields(
            "v1",
            "Pod",
            running,
            &[
                ("metadata.name", "web"),
                ("metadata.namespace", "default"),
                ("spec.nodeName", "node-1"),
                ("spec.hostNetwork", "false"),
                ("spec.restartPolicy", ""),
                ("status.phase", "Running"),
                ("status.podIP", "10.1.0.4"),
            ],
        );
        check_fields(
            "v1",
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}),
            &[("spec.unschedulable", "true"), ("metadata.name", "n")],
        );
        check_fields(
            "v1",
            "Namespace",
            json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}),
            &[("status.phase", "Active"), ("name", "a")],
        );
        check_fields(
            "v1",
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}),
            &[("type", "Opaque")],
        );
        check_fields(
            "apps/v1",
            "ReplicaSet",
            json!({"metadata": {"name": "r", "namespace": "d"}, "status": {"replicas": 2}}),
            &[("status.replicas", "2")],
        );
        check_fields(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j", "namespace": "d"}}),
            &[("status.successful", "0")],
        );
        check_fields(
            "v1",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "kubelet"}, "type": "Normal"}),
            &[
                ("involvedObject.kind", "Pod"),
                ("involvedObject.name", "web"),
                ("source", "kubelet"),
                ("type", "Normal"),
                ("reason", ""),
            ],
        );
        check_fields(
            "events.k8s.io/v1",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}, "regarding": {"kind": "Pod"}, "reportingController": "kubelet"}),
            &[("regarding.kind", "Pod"), ("reportingController", "kubelet")],
        );
        check_fields(
            "v1",
            "Service",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1"}}),
            &[("spec.clusterIP", "10.0.0.1"), ("spec.type", "ClusterIP")],
        );
        check_fields(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            json!({"metadata": {"name": "c"}, "spec": {"signerName": "x/y"}}),
            &[("spec.signerName", "x/y")],
        );
        check_fields(
            "v1",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}}),
            &[("metadata.name", "c")],
        );
    }
}
