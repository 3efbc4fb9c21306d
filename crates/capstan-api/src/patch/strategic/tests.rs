//! Strategic merge patches against real kinds' schemas: the cases kubectl's documentation
//! and apimachinery's test table describe, and the errors upstream gives.

use crate::patch::{PatchError, strategic_merge_patch};
use crate::registry::builtin;
use serde_json::{Value, json};

fn check_smp(kind: &str, target: Value, patch: Value, expected: Result<Value, PatchError>) {
    let resource = builtin().iter().find(|resource| resource.kind == kind);
    let Some(resource) = resource else { panic!("no kind {kind}") };
    let patched = strategic_merge_patch(resource, &target, &patch);
    assert_eq!(patched, expected, "{kind}: {target} + {patch}");
}

fn pod_containers(containers: Value) -> Value {
    json!({"spec": {"containers": containers}})
}

fn finalizers(names: &[&str]) -> Value {
    json!({"metadata": {"finalizers": names}})
}

fn malformed(message: &str) -> Result<Value, PatchError> {
    Err(PatchError::Malformed(message.to_owned()))
}

fn inapplicable(message: &str) -> Result<Value, PatchError> {
    Err(PatchError::Inapplicable(message.to_owned()))
}

/// kubectl's "Update API Objects in Place Using kubectl patch" walk-through.
#[test]
fn kubectl_documentation() {
    let deployment = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
        "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
    }}}});
    // Containers merge by name; the new one comes first, as the documentation shows.
    check_smp(
        "Deployment",
        deployment.clone(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}),
        Ok(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "patch-demo-ctr-2", "image": "redis"}, {"name": "patch-demo-ctr", "image": "nginx"}],
            "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
        }}}})),
    );
    // Tolerations have no patch strategy: replaced.
    check_smp(
        "Deployment",
        deployment,
        json!({"spec": {"template": {"spec": {"tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}}}}),
        Ok(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
            "tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}],
        }}}})),
    );
}

#[test]
fn lists_merge_by_their_keys() {
    let cases = [
        // Containers by name, env by name.
        (
            "Pod",
            pod_containers(
                json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}, {"name": "b", "image": "b:1"}]),
            ),
            pod_containers(
                json!([{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}, {"name": "b", "image": "b:2"}]),
            ),
            pod_containers(
                json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}, {"name": "b", "image": "b:2"}]),
            ),
        ),
        // Container ports by containerPort.
        (
            "Pod",
            pod_containers(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]),
            ),
            pod_containers(
                json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]),
            ),
            pod_containers(
                json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}]}]),
            ),
        ),
        // Volumes by name (with retainKeys: the source switches from emptyDir to hostPath).
        (
            "Pod",
            json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
            json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/x"}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
        ),
        // Conditions by type.
        (
            "Pod",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}}),
        ),
        // Service ports by port.
        (
            "Service",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "name": "https"}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090, "name": "http"}, {"port": 443, "name": "https"}]}}),
        ),
        // Finalizers are a set of strings: a union.
        ("Pod", finalizers(&["a", "b"]), finalizers(&["b", "c"]), finalizers(&["a", "b", "c"])),
        // Without an order directive, new items go in front of the server's.
        ("Pod", finalizers(&["a", "b"]), finalizers(&["c"]), finalizers(&["c", "a", "b"])),
        (
            "Pod",
            pod_containers(json!([{"name": "a"}, {"name": "b"}])),
            pod_containers(json!([{"name": "c"}])),
            pod_containers(json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])),
        ),
        // Args have no strategy: replaced.
        (
            "Pod",
            pod_containers(json!([{"name": "a", "args": ["x", "y"]}])),
            pod_containers(json!([{"name": "a", "args": ["z"]}])),
            pod_containers(json!([{"name": "a", "args": ["z"]}])),
        ),
        // Nested in a Deployment's pod template, next to what `kubectl rollout restart` sends.
        (
            "Deployment",
            json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1", "resources": {"limits": {"cpu": "1"}}}]}}}}),
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}, "spec": {"containers": [{"name": "web", "image": "web:2", "resources": {"limits": {"memory": "1Gi"}}}]}}}}),
            json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}, "spec": {"containers": [{"name": "web", "image": "web:2", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}}),
        ),
    ];
    for (kind, target, patch, expected) in cases {
        check_smp(kind, target, patch, Ok(expected));
    }
}

#[test]
fn directives() {
    let containers =
        pod_containers(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let cases = [
        // `$patch: delete` of a list item, present or not.
        (
            "Pod",
            containers.clone(),
            pod_containers(json!([{"name": "b", "$patch": "delete"}])),
            pod_containers(json!([{"name": "a", "image": "a"}])),
        ),
        (
            "Pod",
            containers.clone(),
            pod_containers(json!([{"name": "z", "$patch": "delete"}])),
            containers.clone(),
        ),
        // `$patch: replace` as a list item replaces the whole list.
        (
            "Pod",
            containers.clone(),
            pod_containers(json!([{"name": "c"}, {"$patch": "replace"}])),
            pod_containers(json!([{"name": "c"}])),
        ),
        // In a map: replace the map, or empty it.
        (
            "Pod",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            json!({"metadata": {"labels": {"c": "3"}}}),
        ),
        (
            "Pod",
            json!({"spec": {"securityContext": {"runAsUser": 1}, "hostname": "h"}}),
            json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            json!({"spec": {"securityContext": {}, "hostname": "h"}}),
        ),
        (
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            json!({"spec": {}}),
        ),
        // `null` deletes a key; for a key that is not there it does nothing.
        (
            "Pod",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"x": "y"}}}),
            json!({"metadata": {"labels": {"b": null, "c": null}}, "spec": {"nodeSelector": null}}),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {}}),
        ),
        // `$retainKeys` on a Deployment's strategy (declared `retainKeys`).
        (
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"], "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}}),
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}}),
        ),
        // `$deleteFromPrimitiveList`, every copy of each value.
        (
            "Pod",
            finalizers(&["a", "b", "c", "b"]),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            finalizers(&["a", "c"]),
        ),
        (
            "Pod",
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {}}),
        ),
        // A map strategy of `replace` (a PodDisruptionBudget's selector).
        (
            "PodDisruptionBudget",
            json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}}),
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1}}),
        ),
        // The whole object.
        ("Pod", containers.clone(), json!({"$patch": "delete"}), json!({})),
        (
            "Pod",
            containers.clone(),
            json!({"$patch": "replace", "kind": "Pod"}),
            json!({"kind": "Pod"}),
        ),
        ("Pod", containers.clone(), json!(null), containers.clone()),
        ("Pod", containers.clone(), json!({}), containers.clone()),
    ];
    for (kind, target, patch, expected) in cases {
        check_smp(kind, target, patch, Ok(expected));
    }
}

/// apimachinery's ordering cases (`$setElementOrder` with server-only items, additions,
/// duplicates, deletions), on a Pod's containers and finalizers.
#[test]
fn set_element_order() {
    let names =
        |names: &[&str]| Value::Array(names.iter().map(|name| json!({"name": name})).collect());
    let cases = [
        // Reorder only.
        (
            pod_containers(names(&["1", "2", "3"])),
            json!({"spec": {"$setElementOrder/containers": names(&["3", "1", "2"])}}),
            pod_containers(names(&["3", "1", "2"])),
        ),
        // Server-only items stay before the items they preceded.
        (
            pod_containers(
                json!([{"name": "1", "image": "a"}, {"name": "2"}, {"name": "9"}, {"name": "3"}, {"name": "4"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": names(&["2", "1", "4", "3"])}}),
            pod_containers(
                json!([{"name": "2"}, {"name": "1", "image": "a"}, {"name": "9"}, {"name": "4"}, {"name": "3"}]),
            ),
        ),
        (
            pod_containers(names(&["1", "2", "7", "9", "8", "3", "4"])),
            json!({"spec": {"$setElementOrder/containers": names(&["2", "1", "4", "3"])}}),
            pod_containers(names(&["2", "1", "7", "9", "8", "4", "3"])),
        ),
        (
            pod_containers(names(&["1", "3", "4", "2", "9"])),
            json!({"spec": {"$setElementOrder/containers": names(&["4", "2", "3", "1"])}}),
            pod_containers(names(&["4", "2", "3", "1", "9"])),
        ),
        // An addition, placed where the directive says.
        (
            pod_containers(json!([{"name": "1", "image": "a"}, {"name": "2"}])),
            json!({"spec": {"$setElementOrder/containers": names(&["3", "1", "2"]), "containers": [{"name": "3", "image": "c"}]}}),
            pod_containers(
                json!([{"name": "3", "image": "c"}, {"name": "1", "image": "a"}, {"name": "2"}]),
            ),
        ),
        (
            pod_containers(names(&["1", "2"])),
            json!({"spec": {"$setElementOrder/containers": names(&["1", "3", "2", "4"]), "containers": names(&["3", "4"])}}),
            pod_containers(names(&["1", "3", "2", "4"])),
        ),
        // A deletion next to it, as kubectl apply sends it.
        (
            pod_containers(names(&["1", "2", "3"])),
            json!({"spec": {"$setElementOrder/containers": names(&["3", "1"]), "containers": [{"name": "2", "$patch": "delete"}]}}),
            pod_containers(names(&["3", "1"])),
        ),
        // Duplicates keep their relative order.
        (
            pod_containers(
                json!([{"name": "1"}, {"name": "2", "image": "dup1"}, {"name": "3"}, {"name": "2", "image": "dup2"}, {"name": "4"}]),
            ),
            json!({"spec": {"$setElementOrder/containers": names(&["2", "1", "4", "3", "2"])}}),
            pod_containers(
                json!([{"name": "2", "image": "dup1"}, {"name": "2", "image": "dup2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]),
            ),
        ),
        // The list did not exist yet.
        (
            json!({"spec": {}}),
            json!({"spec": {"$setElementOrder/containers": names(&["2", "1"]), "containers": names(&["2", "1"])}}),
            pod_containers(names(&["2", "1"])),
        ),
        // Primitive lists: add, delete, both.
        (
            finalizers(&["1", "2"]),
            json!({"metadata": {"$setElementOrder/finalizers": ["3", "1", "2"], "finalizers": ["3"]}}),
            finalizers(&["3", "1", "2"]),
        ),
        (
            finalizers(&["1", "2", "3", "3", "4"]),
            json!({"metadata": {"$setElementOrder/finalizers": ["1", "2"], "$deleteFromPrimitiveList/finalizers": ["3"]}}),
            finalizers(&["1", "2", "4"]),
        ),
        (
            finalizers(&["1", "2", "3"]),
            json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "4"], "$deleteFromPrimitiveList/finalizers": ["3"], "finalizers": ["4"]}}),
            finalizers(&["1", "2", "4"]),
        ),
        (
            finalizers(&["1", "2", "3", "2", "4"]),
            json!({"metadata": {"$setElementOrder/finalizers": ["2", "1", "4", "3", "2"]}}),
            finalizers(&["2", "2", "1", "4", "3"]),
        ),
        (
            finalizers(&["1", "3", "4", "2", "9"]),
            json!({"metadata": {"$setElementOrder/finalizers": ["4", "2", "3", "1"]}}),
            finalizers(&["4", "2", "3", "1", "9"]),
        ),
    ];
    for (target, patch, expected) in cases {
        check_smp("Pod", target, patch, Ok(expected));
    }
}

/// What the patch brings in whole carries no `null`s and no directives.
#[test]
fn added_values_are_clean() {
    let cases = [
        (
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"initContainers": [{"name": "x", "$patch": "delete"}, {"name": "y", "env": [{"name": "A", "value": null}]}]}}),
            json!({"spec": {"initContainers": [{"name": "y", "env": [{"name": "A"}]}]}}),
        ),
        (
            "Deployment",
            json!({"spec": {}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "template": {"$setElementOrder/x": [], "metadata": {"labels": {"a": null}}}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}, "template": {"metadata": {"labels": {}}}}}),
        ),
        // An appended list item, and a replaced list.
        (
            "Pod",
            pod_containers(json!([{"name": "a", "args": ["1"]}])),
            pod_containers(
                json!([{"name": "a", "args": [{"$patch": "replace"}, "2"]}, {"name": "b", "image": null, "env": [{"name": "E", "$patch": "delete"}]}]),
            ),
            pod_containers(json!([{"name": "a", "args": ["2"]}, {"name": "b", "env": []}])),
        ),
        // Unknown fields merge as in a JSON merge patch; their lists are replaced.
        (
            "ConfigMap",
            json!({"data": {"a": "1"}, "extra": {"x": [1, 2], "y": {"z": 1}}}),
            json!({"data": {"b": "2"}, "extra": {"x": [3], "y": {"w": 2}}}),
            json!({"data": {"a": "1", "b": "2"}, "extra": {"x": [3], "y": {"z": 1, "w": 2}}}),
        ),
    ];
    for (kind, target, patch, expected) in cases {
        check_smp(kind, target, patch, Ok(expected));
    }
}

#[test]
fn errors() {
    let containers = pod_containers(json!([{"name": "a"}]));
    let cases = [
        (
            json!([1]),
            malformed("json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ),
        (
            json!("x"),
            malformed(
                "json: cannot unmarshal string into Go value of type map[string]interface {}",
            ),
        ),
        (
            json!({"spec": {"$patch": "merge", "a": 1}}),
            malformed("unknown patch type: merge in map: map[$patch:merge a:1]"),
        ),
        (
            pod_containers(json!([{"$patch": "merge"}])),
            malformed("merging lists cannot yet be specified in the patch"),
        ),
        (
            pod_containers(json!([{"$patch": "frob", "name": "a"}])),
            malformed("unknown patch type: frob in map: map[$patch:frob name:a]"),
        ),
        (
            pod_containers(json!([{"image": "x"}])),
            malformed("map: map[image:x] does not contain declared merge key: name"),
        ),
        (
            pod_containers(json!([{"$patch": "delete"}])),
            malformed("map: map[$patch:delete] does not contain declared merge key: name"),
        ),
        (
            json!({"spec": {"$retainKeys": ["a"], "hostname": "h"}}),
            malformed("invalid patch format of retainKeys"),
        ),
        (json!({"spec": {"$retainKeys": "a"}}), malformed("invalid patch format of retainKeys")),
        (
            json!({"spec": {"$setElementOrder/containers": "a"}}),
            malformed("expected a []interface {}, but received a string"),
        ),
        (
            json!({"spec": {"$setElementOrderX": []}}),
            malformed("invalid patch format of setElementOrder list"),
        ),
        (
            json!({"spec": {"$deleteFromPrimitiveList": []}}),
            malformed("invalid patch format of primitive list"),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}),
            malformed(
                "The order in patch list:\n[map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n",
            ),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"image": "a"}], "containers": [{"name": "b"}]}}),
            malformed("map: map[image:a] does not contain declared merge key: name"),
        ),
        (
            json!({"metadata": {"finalizers": [["a"]]}}),
            inapplicable("lists of lists are not supported"),
        ),
        (
            json!({"metadata": {"finalizers": ["a", 1]}}),
            inapplicable("list element types are not identical: [[] [a 1]]"),
        ),
    ];
    let target = json!({"metadata": {"finalizers": []}, "spec": containers["spec"].clone()});
    for (patch, expected) in cases {
        check_smp("Pod", target.clone(), patch, expected);
    }
    // A stored list item without its merge key cannot be merged with.
    check_smp(
        "Pod",
        pod_containers(json!([{"image": "x"}])),
        pod_containers(json!([{"name": "a"}])),
        inapplicable("map: map[image:x] does not contain declared merge key: name"),
    );
}

#[test]
fn every_builtin_kind_has_a_schema() {
    for resource in builtin() {
        assert!(crate::openapi::schema_of(resource).is_some(), "{}", resource.kind);
    }
}
