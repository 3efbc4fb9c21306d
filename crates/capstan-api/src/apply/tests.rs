//! Server-side apply and update tracking, scenario by scenario, through one helper per
//! area; and property tests: applying a configuration twice changes nothing, and no
//! configuration makes apply or update tracking panic.

use super::*;
use crate::registry::find;
use serde_json::json;

const T1: &str = "2024-01-01T00:00:01Z";
const T2: &str = "2024-01-01T00:00:02Z";
const T3: &str = "2024-01-01T00:00:03Z";

fn deployments() -> &'static ResourceType {
    find("apps", "v1", "deployments").unwrap()
}

fn pods() -> &'static ResourceType {
    find("", "v1", "pods").unwrap()
}

fn config_maps() -> &'static ResourceType {
    find("", "v1", "configmaps").unwrap()
}

/// A Deployment `web` with `spec`.
fn deploy(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
}

/// A Pod `p` with containers.
fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn entry(manager: &str, operation: &str, api_version: &str, time: &str, fields: Value) -> Value {
    json!({
        "manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": fields,
    })
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    take_managed_fields(&mut object);
    object
}

fn managed_fields(object: &Value) -> Value {
    object.pointer("/metadata/managedFields").cloned().unwrap_or(Value::Null)
}

/// Applies and checks the object (without managedFields) and its managedFields (`null`:
/// none). Returns the object for the next step.
#[track_caller]
fn check_apply(
    resource: &ResourceType,
    live: Option<&Value>,
    applied: Value,
    (manager, force, now): (&str, bool, &str),
    expected_object: Value,
    expected_managed: Value,
) -> Value {
    let object = apply(resource, live, &applied, manager, "", force, now)
        .unwrap_or_else(|err| panic!("apply failed: {err:?}"));
    assert_eq!(without_managed_fields(&object), expected_object, "object");
    assert_eq!(managed_fields(&object), expected_managed, "managedFields");
    object
}

/// Applies and checks the conflicts, as (manager, field) pairs.
#[track_caller]
fn check_conflicts(
    resource: &ResourceType,
    live: &Value,
    applied: Value,
    manager: &str,
    expected: &[(&str, &str)],
) {
    match apply(resource, Some(live), &applied, manager, "", false, T3) {
        Err(ApplyError::Conflicts(conflicts)) => {
            let found: Vec<(&str, &str)> =
                conflicts.iter().map(|c| (c.manager.as_str(), c.field.as_str())).collect();
            assert_eq!(found, expected);
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
}

/// Tracks an update and checks the managedFields it leaves (`null`: none).
#[track_caller]
fn check_update(
    resource: &ResourceType,
    old: Option<&Value>,
    new: Value,
    (manager, subresource, now): (&str, &str, &str),
    expected_managed: Value,
) -> Value {
    let mut new = new;
    track_update(resource, old, &mut new, manager, subresource, now);
    assert_eq!(managed_fields(&new), expected_managed, "managedFields");
    new
}

#[track_caller]
fn check_invalid(resource: &ResourceType, live: Option<&Value>, applied: Value, expected: &str) {
    match apply(resource, live, &applied, "m", "", false, T1) {
        Err(ApplyError::Invalid(message)) => assert_eq!(message, expected),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn apply_creates_and_is_idempotent() {
    let created = check_apply(
        deployments(),
        None,
        deploy(json!({"replicas": 3})),
        ("a", false, T1),
        deploy(json!({"replicas": 3})),
        json!([entry("a", "Apply", "apps/v1", T1, json!({"f:spec": {"f:replicas": {}}}))]),
    );
    // The same configuration again: same object, same entry, same time.
    let again = check_apply(
        deployments(),
        Some(&created),
        deploy(json!({"replicas": 3})),
        ("a", false, T2),
        deploy(json!({"replicas": 3})),
        managed_fields(&created),
    );
    assert_eq!(again, created);
    // A change restamps the entry.
    check_apply(
        deployments(),
        Some(&created),
        deploy(json!({"replicas": 4})),
        ("a", false, T2),
        deploy(json!({"replicas": 4})),
        json!([entry("a", "Apply", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}}))]),
    );
}

#[test]
fn apply_records_maps_structs_and_lists_as_upstream() {
    check_apply(
        deployments(),
        None,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {},
                    }]},
                },
            },
        }),
        ("kubectl", false, T1),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {},
                    }]},
                },
            },
        }),
        json!([entry(
            "kubectl",
            "Apply",
            "apps/v1",
            T1,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    // LabelSelector is an atomic struct.
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {},
                                "f:containerPort": {},
                            }},
                            "f:resources": {},
                        }}},
                    },
                },
            })
        )]),
    );
}

#[test]
fn apply_removes_what_the_applier_stopped_setting() {
    let live = apply(
        deployments(),
        None,
        &deploy(json!({"replicas": 3, "paused": true, "strategy": {"type": "Recreate"}})),
        "a",
        "",
        false,
        T1,
    )
    .unwrap();
    check_apply(
        deployments(),
        Some(&live),
        deploy(json!({"replicas": 3})),
        ("a", false, T2),
        deploy(json!({"replicas": 3})),
        json!([entry("a", "Apply", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}}))]),
    );
    // A field another manager also owns stays, and stays theirs. (b's apply changed
    // nothing: upstream stamps no time then.)
    let shared =
        apply(deployments(), Some(&live), &deploy(json!({"paused": true})), "b", "", false, T2)
            .unwrap();
    check_apply(
        deployments(),
        Some(&shared),
        deploy(json!({"replicas": 3})),
        ("a", false, T3),
        deploy(json!({"replicas": 3, "paused": true})),
        json!([
            {"manager": "b", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:paused": {}}}},
            entry("a", "Apply", "apps/v1", T3, json!({"f:spec": {"f:replicas": {}}})),
        ]),
    );
}

#[test]
fn apply_conflicts_shares_and_forces() {
    let live =
        apply(deployments(), None, &deploy(json!({"replicas": 3})), "a", "", false, T1).unwrap();
    check_conflicts(
        deployments(),
        &live,
        deploy(json!({"replicas": 5})),
        "b",
        &[("a", ".spec.replicas")],
    );
    // The same value: shared, no conflict. The object did not change: b's entry has no time.
    let shared =
        apply(deployments(), Some(&live), &deploy(json!({"replicas": 3})), "b", "", false, T2)
            .unwrap();
    assert_eq!(
        managed_fields(&shared),
        json!([
            {"manager": "b", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            entry("a", "Apply", "apps/v1", T1, json!({"f:spec": {"f:replicas": {}}})),
        ])
    );
    // Shared owners both conflict with a third.
    check_conflicts(
        deployments(),
        &shared,
        deploy(json!({"replicas": 7})),
        "c",
        &[("a", ".spec.replicas"), ("b", ".spec.replicas")],
    );
    // Force moves the field: a, left with nothing, is gone.
    check_apply(
        deployments(),
        Some(&live),
        deploy(json!({"replicas": 5})),
        ("b", true, T2),
        deploy(json!({"replicas": 5})),
        json!([entry("b", "Apply", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}}))]),
    );
}

#[test]
fn list_maps_merge_by_key() {
    let live = apply(pods(), None, &pod(json!([{"name": "a", "image": "x"}])), "ma", "", false, T1)
        .unwrap();
    let both = check_apply(
        pods(),
        Some(&live),
        pod(json!([{"name": "b", "image": "y"}])),
        ("mb", false, T2),
        pod(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
        json!([
            entry(
                "ma",
                "Apply",
                "v1",
                T1,
                json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
            ),
            entry(
                "mb",
                "Apply",
                "v1",
                T2,
                json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"b\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
            ),
        ]),
    );
    // Changing another manager's item's field conflicts at that field only.
    check_conflicts(
        pods(),
        &both,
        pod(json!([{"name": "a", "image": "z"}])),
        "mb",
        &[("ma", ".spec.containers[name=\"a\"].image")],
    );
    // An item the applier drops goes; the other manager's stays.
    check_apply(
        pods(),
        Some(&both),
        pod(json!([])),
        ("mb", false, T3),
        pod(json!([{"name": "a", "image": "x"}])),
        json!([entry(
            "ma",
            "Apply",
            "v1",
            T1,
            json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        )]),
    );
    // The configuration's order for shared items, the object's items kept in place.
    let three = apply(
        pods(),
        None,
        &pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
        "ma",
        "",
        false,
        T1,
    )
    .unwrap();
    let reordered = apply(
        pods(),
        Some(&three),
        &pod(json!([{"name": "c"}, {"name": "d"}, {"name": "a"}])),
        "mb",
        "",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(
        reordered.pointer("/spec/containers").unwrap(),
        &json!([{"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "a"}])
    );
}

#[test]
fn sets_merge_by_value_and_atomic_lists_are_units() {
    let with = |finalizers: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": finalizers}});
    let live = apply(config_maps(), None, &with(json!(["x"])), "a", "", false, T1).unwrap();
    let both = check_apply(
        config_maps(),
        Some(&live),
        with(json!(["y"])),
        ("b", false, T2),
        with(json!(["x", "y"])),
        json!([
            entry("a", "Apply", "v1", T1, json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}}}})),
            entry("b", "Apply", "v1", T2, json!({"f:metadata": {"f:finalizers": {"v:\"y\"": {}}}})),
        ]),
    );
    check_apply(
        config_maps(),
        Some(&both),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ("a", false, T3),
        with(json!(["y"])),
        json!([entry(
            "b",
            "Apply",
            "v1",
            T2,
            json!({"f:metadata": {"f:finalizers": {"v:\"y\"": {}}}})
        )]),
    );

    // `command` is atomic: replaced whole, owned as one field.
    let live = apply(
        pods(),
        None,
        &pod(json!([{"name": "c", "command": ["x", "y"]}])),
        "a",
        "",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(
        managed_fields(&live)[0]["fieldsV1"],
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:command": {}, "f:name": {}}}}})
    );
    check_conflicts(
        pods(),
        &live,
        pod(json!([{"name": "c", "command": ["z"]}])),
        "b",
        &[("a", ".spec.containers[name=\"c\"].command")],
    );
    let forced = apply(
        pods(),
        Some(&live),
        &pod(json!([{"name": "c", "command": ["z"]}])),
        "b",
        "",
        true,
        T2,
    )
    .unwrap();
    assert_eq!(forced.pointer("/spec/containers/0/command").unwrap(), &json!(["z"]));
}

#[test]
fn maps_are_granular_and_nulls_remove() {
    let with = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
    let live = apply(config_maps(), None, &with(json!({"a": "1"})), "m1", "", false, T1).unwrap();
    let both = check_apply(
        config_maps(),
        Some(&live),
        with(json!({"b": "2"})),
        ("m2", false, T2),
        with(json!({"a": "1", "b": "2"})),
        json!([
            entry("m1", "Apply", "v1", T1, json!({"f:data": {"f:a": {}}})),
            entry("m2", "Apply", "v1", T2, json!({"f:data": {"f:b": {}}})),
        ]),
    );
    // An explicit null removes the value, and is owned: a conflict with its owner.
    check_conflicts(config_maps(), &both, with(json!({"a": null})), "m2", &[("m1", ".data.a")]);
    check_apply(
        config_maps(),
        Some(&both),
        with(json!({"a": null, "b": "2"})),
        ("m2", true, T3),
        with(json!({"b": "2"})),
        // m1, left with nothing, is gone.
        json!([entry("m2", "Apply", "v1", T3, json!({"f:data": {"f:a": {}, "f:b": {}}}))]),
    );
}

#[test]
fn update_takes_fields_and_a_reapply_then_conflicts() {
    let live = apply(
        deployments(),
        None,
        &deploy(json!({"replicas": 3, "paused": false})),
        "a",
        "",
        false,
        T1,
    )
    .unwrap();
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(4);
    let edited = check_update(
        deployments(),
        Some(&live),
        edited,
        ("kubectl-edit", "", T2),
        json!([
            entry("a", "Apply", "apps/v1", T1, json!({"f:spec": {"f:paused": {}}})),
            entry("kubectl-edit", "Update", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}})),
        ]),
    );
    check_conflicts(
        deployments(),
        &edited,
        deploy(json!({"replicas": 3, "paused": false})),
        "a",
        &[("kubectl-edit", ".spec.replicas")],
    );
    let conflict = Conflict { manager: "kubectl-edit".into(), field: ".spec.replicas".into() };
    assert_eq!(
        conflict_message(std::slice::from_ref(&conflict), "apps/v1"),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        conflict_message_in(Some(&edited), std::slice::from_ref(&conflict), "apps/v1"),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );

    // A second update by the same manager merges into its entry; an update that changes
    // nothing leaves everything (time included) alone.
    let mut again = edited.clone();
    again["spec"]["paused"] = json!(true);
    let again = check_update(
        deployments(),
        Some(&edited),
        again,
        ("kubectl-edit", "", T3),
        json!([entry(
            "kubectl-edit",
            "Update",
            "apps/v1",
            T3,
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
        )]),
    );
    check_update(
        deployments(),
        Some(&again),
        again.clone(),
        ("other", "", T3),
        managed_fields(&again),
    );
}

#[test]
fn update_on_create_and_managed_fields_from_the_client() {
    let created = check_update(
        config_maps(),
        None,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}}),
        ("kubectl-create", "", T1),
        json!([entry(
            "kubectl-create",
            "Update",
            "v1",
            T1,
            json!({
                "f:data": {".": {}, "f:k": {}},
                "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
            })
        )]),
    );
    let mut stored = created.clone();
    stored["metadata"]["uid"] = json!("u1");
    // `[]` clears them; an existing object without managedFields is then left alone.
    let mut cleared = stored.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    let cleared = check_update(config_maps(), Some(&stored), cleared, ("x", "", T2), Value::Null);
    let mut changed = cleared.clone();
    changed["data"]["k"] = json!("w");
    check_update(config_maps(), Some(&cleared), changed, ("x", "", T2), Value::Null);
    // Managed fields the client sends replace the stored ones; absent ones keep them.
    let mut replaced = stored.clone();
    replaced["metadata"]["managedFields"] =
        json!([entry("y", "Update", "v1", T1, json!({"f:data": {"f:k": {}}}))]);
    check_update(
        config_maps(),
        Some(&stored),
        replaced,
        ("x", "", T2),
        json!([entry("y", "Update", "v1", T1, json!({"f:data": {"f:k": {}}}))]),
    );
    let mut kept = stored.clone();
    take_managed_fields(&mut kept);
    check_update(config_maps(), Some(&stored), kept, ("x", "", T2), managed_fields(&stored));
}

#[test]
fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "uid": "u1"}, "spec": {"replicas": 1, "paused": false},
    });
    check_conflicts(
        deployments(),
        &live,
        deploy(json!({"replicas": 2})),
        "a",
        &[(BEFORE_FIRST_APPLY, ".spec.replicas")],
    );
    let conflict = Conflict { manager: BEFORE_FIRST_APPLY.into(), field: ".spec.replicas".into() };
    assert_eq!(
        conflict_message_in(Some(&live), &[conflict], "apps/v1"),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    check_apply(
        deployments(),
        Some(&live),
        deploy(json!({"replicas": 1})),
        ("a", false, T2),
        without_managed_fields(&live),
        json!([
            {"manager": "a", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            entry(BEFORE_FIRST_APPLY, "Update", "apps/v1", T2, json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})),
        ]),
    );
}

#[test]
fn kubectl_takes_over_from_client_side_apply() {
    let last = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web"},"spec":{"replicas":3}}
"#;
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "uid": "u1",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last},
            "managedFields": [entry("kubectl-client-side-apply", "Update", "apps/v1", T1, json!({
                "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                "f:spec": {"f:replicas": {}},
            }))],
        },
        "spec": {"replicas": 3},
    });
    // Another manager conflicts, with upstream's message.
    check_conflicts(
        deployments(),
        &live,
        deploy(json!({"replicas": 5})),
        "other",
        &[("kubectl-client-side-apply", ".spec.replicas")],
    );
    // kubectl does not, and keeps the annotation in step.
    let applied = apply(
        deployments(),
        Some(&live),
        &deploy(json!({"replicas": 5})),
        "kubectl",
        "",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(applied["spec"]["replicas"], json!(5));
    assert_eq!(
        applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        json!(
            "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"replicas\":5}}\n"
        )
    );
    assert_eq!(
        managed_fields(&applied),
        json!([
            entry("kubectl", "Apply", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}})),
            entry(
                "kubectl-client-side-apply",
                "Update",
                "apps/v1",
                T1,
                json!({
                    "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                })
            ),
        ])
    );
    // A field the client-side apply did not set (or set to another value) still conflicts.
    let mut drifted = live.clone();
    drifted["spec"]["replicas"] = json!(4);
    check_conflicts(
        deployments(),
        &drifted,
        deploy(json!({"replicas": 5})),
        "kubectl",
        &[("kubectl-client-side-apply", ".spec.replicas")],
    );
}

#[test]
fn status_subresource_applies_status_only() {
    let live =
        apply(deployments(), None, &deploy(json!({"replicas": 3})), "a", "", false, T1).unwrap();
    let mut config = deploy(json!({"replicas": 9}));
    config["status"] = json!({"replicas": 2});
    let object = apply(deployments(), Some(&live), &config, "ctrl", "status", false, T2).unwrap();
    assert_eq!(object["spec"], json!({"replicas": 3}));
    assert_eq!(object["status"], json!({"replicas": 2}));
    assert_eq!(
        managed_fields(&object),
        json!([
            entry("a", "Apply", "apps/v1", T1, json!({"f:spec": {"f:replicas": {}}})),
            {"manager": "ctrl", "operation": "Apply", "apiVersion": "apps/v1", "time": T2,
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}},
             "subresource": "status"},
        ])
    );
    // Status applied to the main resource is not taken nor owned.
    let main = apply(deployments(), Some(&object), &config, "a", "", true, T3).unwrap();
    assert_eq!(main["status"], json!({"replicas": 2}));
    assert_eq!(main["spec"], json!({"replicas": 9}));
    assert_eq!(managed_fields(&main)[1]["manager"], json!("a"));
    assert_eq!(managed_fields(&main)[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // Another status writer conflicts with the status applier, naming its subresource.
    let mut status_update = main.clone();
    status_update["status"]["replicas"] = json!(1);
    let tracked = check_update(
        deployments(),
        Some(&main),
        status_update,
        ("kube-controller-manager", "status", T3),
        json!([
            entry("a", "Apply", "apps/v1", T3, json!({"f:spec": {"f:replicas": {}}})),
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": T3, "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}},
             "subresource": "status"},
        ]),
    );
    let conflict =
        Conflict { manager: "kube-controller-manager".into(), field: ".status.replicas".into() };
    assert_eq!(
        conflict_cause_in(Some(&tracked), &conflict, "apps/v1"),
        "conflict with \"kube-controller-manager\" with subresource \"status\" using apps/v1"
    );
}

#[test]
fn refuses_malformed_configurations() {
    check_invalid(deployments(), None, json!([]), "the applied configuration must be an object");
    check_invalid(
        deployments(),
        None,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
        "invalid object type: /v1, Kind=Pod",
    );
    check_invalid(
        deployments(),
        None,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": []}}),
        "metadata.managedFields must be nil",
    );
    let live = deploy(json!({}));
    let mut renamed = deploy(json!({}));
    renamed["metadata"]["name"] = json!("other");
    check_invalid(
        deployments(),
        Some(&live),
        renamed,
        "the name of the object (other) does not match the name on the URL (web)",
    );
    check_invalid(
        pods(),
        None,
        pod(json!([{"name": "a"}, {"name": "a"}])),
        "failed to create typed patch object (/v1, Kind=Pod): .spec.containers: duplicate entries for key [name=\"a\"]",
    );
    check_invalid(
        pods(),
        None,
        pod(json!([{"image": "a"}])),
        "failed to create typed patch object (/v1, Kind=Pod): .spec.containers: element 0: \
         associative list with keys has an element that omits all key fields [\"name\"] \
         (and doesn't have default values for any key fields)",
    );
}

#[test]
fn conflict_messages_group_by_manager() {
    let conflicts = [
        Conflict { manager: "b".into(), field: ".spec.replicas".into() },
        Conflict { manager: "a".into(), field: ".spec.paused".into() },
        Conflict { manager: "b".into(), field: ".spec.strategy.type".into() },
    ];
    assert_eq!(
        conflict_message(&conflicts, "apps/v1"),
        "Apply failed with 3 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.paused\n\
         conflicts with \"b\" using apps/v1:\n- .spec.replicas\n- .spec.strategy.type"
    );
    let live =
        apply(deployments(), None, &deploy(json!({"paused": true})), "a", "", false, T1).unwrap();
    assert_eq!(
        conflict_message_in(Some(&live), &conflicts[1..2], "apps/v1"),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.paused"
    );
}

#[test]
fn update_entries_are_capped() {
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"}, "data": {}});
    let mut old: Option<Value> = None;
    for i in 0..12 {
        let mut new = object.clone();
        new["data"][format!("k{i}")] = json!("v");
        track_update(
            config_maps(),
            old.as_ref(),
            &mut new,
            &format!("m{i:02}"),
            "",
            &format!("2024-01-01T00:00:{i:02}Z"),
        );
        old = Some(new.clone());
        object = new;
    }
    let entries = managed_fields(&object);
    let managers: Vec<&str> =
        entries.as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
    assert_eq!(
        managers,
        ["ancient-changes", "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m11"]
    );
}

/// A random value of a few shapes, with field names a Deployment uses so that the schema
/// is exercised: lists of named items, sets, maps, nulls.
fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    const NAMES: &[&str] = &[
        "name",
        "image",
        "replicas",
        "paused",
        "spec",
        "template",
        "containers",
        "ports",
        "containerPort",
        "protocol",
        "labels",
        "matchLabels",
        "env",
        "value",
        "command",
        "finalizers",
        "metadata",
        "selector",
        "strategy",
        "type",
        "x",
    ];
    match if depth == 0 { rng.u8(0..4) } else { rng.u8(0..7) } {
        0 => Value::Null,
        1 => json!(rng.i64(-3..100)),
        2 => json!(["a", "b", "web", "TCP"][rng.usize(0..4)]),
        3 => json!(rng.bool()),
        4 | 5 => {
            let mut map = Map::new();
            for _ in 0..rng.usize(0..4) {
                map.insert(NAMES[rng.usize(0..NAMES.len())].into(), random_value(rng, depth - 1));
            }
            Value::Object(map)
        }
        _ => Value::Array((0..rng.usize(0..3)).map(|_| random_value(rng, depth - 1)).collect()),
    }
}

fn random_deployment(rng: &mut fastrand::Rng) -> Value {
    let mut object = deploy(random_value(rng, 5));
    if rng.bool() {
        object["metadata"]["labels"] = random_value(rng, 2);
    }
    object
}

#[test]
fn property_applying_twice_changes_nothing_and_nothing_panics() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut applied_twice = 0;
    for _ in 0..3000 {
        let live = random_deployment(&mut rng);
        let config = random_deployment(&mut rng);
        let manager = ["a", "b", "kubectl"][rng.usize(0..3)];
        // Any live object, tracked or not, and any configuration: no panic.
        let mut tracked = live.clone();
        track_update(deployments(), None, &mut tracked, "creator", "", T1);
        let mut updated = config.clone();
        track_update(deployments(), Some(&tracked), &mut updated, "updater", "", T2);
        let _ = apply(deployments(), Some(&live), &config, manager, "", rng.bool(), T1);
        let _ = apply(deployments(), Some(&updated), &config, manager, "status", rng.bool(), T1);
        let Ok(first) = apply(deployments(), Some(&tracked), &config, manager, "", true, T2) else {
            continue;
        };
        let second = apply(deployments(), Some(&first), &config, manager, "", false, T3)
            .unwrap_or_else(|err| panic!("second apply of {config} failed: {err:?}"));
        assert_eq!(second, first, "second apply of {config} onto {tracked}");
        applied_twice += 1;
        // Another manager applying the same values shares them without conflicts (an
        // explicit null is the exception: the field is absent, so the null is a change).
        if !config.to_string().contains("null") {
            let shared = apply(deployments(), Some(&first), &config, "other", "", false, T3);
            assert!(shared.is_ok(), "{config} onto {first}: {shared:?}");
        }
    }
    assert!(applied_twice > 500, "only {applied_twice} configurations applied");
}

#[test]
fn pruning_removes_emptied_lists_and_whole_structs() {
    let with_env = pod(json!([{"name": "c", "env": [{"name": "X", "value": "1"}]}]));
    let live = apply(pods(), None, &with_env, "a", "", false, T1).unwrap();
    check_apply(
        pods(),
        Some(&live),
        pod(json!([{"name": "c"}])),
        ("a", false, T2),
        pod(json!([{"name": "c"}])),
        json!([entry(
            "a",
            "Apply",
            "v1",
            T2,
            json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"c\"}": {".": {}, "f:name": {}}}}})
        )]),
    );
    // A struct the applier no longer sets goes whole, with the unowned (defaulted) fields
    // below it; unowned fields elsewhere stay.
    let mut live = apply(
        deployments(),
        None,
        &deploy(json!({"replicas": 1, "strategy": {"type": "RollingUpdate"}})),
        "a",
        "",
        false,
        T1,
    )
    .unwrap();
    live["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%"});
    live["spec"]["revisionHistoryLimit"] = json!(10);
    check_apply(
        deployments(),
        Some(&live),
        deploy(json!({"replicas": 1})),
        ("a", false, T2),
        deploy(json!({"replicas": 1, "revisionHistoryLimit": 10})),
        json!([entry("a", "Apply", "apps/v1", T2, json!({"f:spec": {"f:replicas": {}}}))]),
    );
}

#[test]
fn nulls_from_generated_manifests_keep_server_metadata() {
    let mut live =
        apply(deployments(), None, &deploy(json!({"replicas": 1})), "a", "", false, T1).unwrap();
    live["metadata"]["uid"] = json!("u1");
    live["metadata"]["creationTimestamp"] = json!(T1);
    let mut config =
        deploy(json!({"replicas": 1, "template": {"metadata": {"creationTimestamp": null}}}));
    config["metadata"]["creationTimestamp"] = json!(null);
    let object = apply(deployments(), Some(&live), &config, "a", "", false, T2).unwrap();
    assert_eq!(object["metadata"]["creationTimestamp"], json!(T1));
    assert_eq!(object["spec"], json!({"replicas": 1, "template": {"metadata": {}}}));
    assert_eq!(
        managed_fields(&object)[0]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}, "f:template": {"f:metadata": {"f:creationTimestamp": {}}}}})
    );
}

#[test]
fn kinds_without_a_schema_are_deduced() {
    static WIDGETS: ResourceType = ResourceType {
        group: "example.com",
        version: "v1",
        plural: "widgets",
        singular: "widget",
        kind: "Widget",
        scope: crate::registry::Scope::Namespaced,
        verbs: &[],
        short_names: &[],
        categories: &[],
        subresources: &[],
    };
    let widget = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": spec});
    let live = check_apply(
        &WIDGETS,
        None,
        widget(json!({"size": {"x": 1}, "items": [{"name": "a"}]})),
        ("a", false, T1),
        widget(json!({"size": {"x": 1}, "items": [{"name": "a"}]})),
        json!([entry(
            "a",
            "Apply",
            "example.com/v1",
            T1,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:items": {}, "f:size": {".": {}, "f:x": {}}},
            })
        )]),
    );
    // Lists without a schema are atomic.
    check_conflicts(
        &WIDGETS,
        &live,
        widget(json!({"items": [{"name": "b"}]})),
        "b",
        &[("a", ".spec.items")],
    );
}
