//! The columns and cells kube-apiserver's printers give each kind (its
//! `pkg/printers/internalversion`), written anew from their documented behaviour.

use super::{Column, Printer, age};
use serde_json::{Value, json};

const NAME: Column = Column {
    name: "Name",
    type_name: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    priority: 0,
};

const AGE: Column = Column {
    name: "Age",
    type_name: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    priority: 0,
};

const fn column(
    name: &'static str,
    type_name: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column { name, type_name, format: "", description, priority }
}

/// A string field at a path of object keys, if present.
fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(object, path)?.as_str()
}

fn name(object: &Value) -> Value {
    json!(text(object, &["metadata", "name"]).unwrap_or(""))
}

fn object_age(object: &Value, now: i64) -> Value {
    json!(age(text(object, &["metadata", "creationTimestamp"]), now))
}

/// The number of entries of a map (or items of a list) field.
fn count(object: &Value, field: &str) -> usize {
    match object.get(field) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// Kinds with no printer get upstream's default table: the name and when it was created.
pub(super) const DEFAULT: Printer = Printer {
    columns: &[
        NAME,
        Column {
            name: "Created At",
            type_name: "date",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            priority: 0,
        },
    ],
    cells: |object, _| vec![name(object), json!(text(object, &["metadata", "creationTimestamp"]))],
};

const NAMESPACE: Printer = Printer {
    columns: &[NAME, column("Status", "string", "The status of the namespace", 0), AGE],
    cells: |object, now| {
        vec![
            name(object),
            json!(text(object, &["status", "phase"]).unwrap_or("")),
            object_age(object, now),
        ]
    },
};

const CONFIG_MAP: Printer = Printer {
    columns: &[NAME, column("Data", "string", "Data contains the configuration data.", 0), AGE],
    cells: |object, now| {
        let entries = count(object, "data") + count(object, "binaryData");
        vec![name(object), json!(entries), object_age(object, now)]
    },
};

const SECRET: Printer = Printer {
    columns: &[
        NAME,
        column("Type", "string", "The type of the secret", 0),
        column("Data", "string", "The number of entries in the secret", 0),
        AGE,
    ],
    cells: |object, now| {
        vec![
            name(object),
            json!(text(object, &["type"]).unwrap_or("")),
            json!(count(object, "data")),
            object_age(object, now),
        ]
    },
};

const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            0,
        ),
        AGE,
    ],
    cells: |object, now| {
        vec![name(object), json!(count(object, "secrets")), object_age(object, now)]
    },
};

/// The value at a path of keys; an explicit `null` counts as absent, as a nil pointer does
/// upstream.
fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(key)).filter(|value| !value.is_null())
}

fn int(object: &Value, path: &[&str]) -> i64 {
    at(object, path).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    at(object, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".to_owned() } else { text.to_owned() }
}

/// `k=v` entries sorted as whole strings and joined with `,`; `<none>` when empty.
fn format_labels(map: Option<&Value>) -> String {
    let mut entries: Vec<String> = map
        .and_then(Value::as_object)
        .map(|map| map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    entries.sort();
    or_none(&entries.join(","))
}

/// A `metav1.LabelSelector` in selector syntax, requirements sorted by key; `""` when empty.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else { return String::new() };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or(""))));
        }
    }
    for expression in list(selector, &["matchExpressions"]) {
        let key = text(expression, &["key"]).unwrap_or("").to_owned();
        let mut values: Vec<&str> =
            list(expression, &["values"]).iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let shown = match text(expression, &["operator"]).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".to_owned(),
        };
        requirements.push((key, shown));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    requirements.into_iter().map(|(_, shown)| shown).collect::<Vec<_>>().join(",")
}

/// Like `selector_string`, with `<none>` for an empty selector.
fn format_label_selector(selector: Option<&Value>) -> String {
    let shown = selector_string(selector);
    or_none(&shown)
}

/// The names and images of a pod template's (or pod spec's) containers, each joined by `,`.
fn containers(spec: Option<&Value>) -> (Value, Value) {
    let containers = spec.map_or(&[][..], |spec| list(spec, &["containers"]));
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"]).unwrap_or("")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"]).unwrap_or("")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

const CONTAINERS: Column =
    column("Containers", "string", "Names of each container in the template.", 1);
const IMAGES: Column =
    column("Images", "string", "Images referenced by each container in the template.", 1);
const SELECTOR: Column = column(
    "Selector",
    "string",
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    1,
);

const POD: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
            0,
        ),
        column("Status", "string", "The aggregate status of the containers in this pod.", 0),
        column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            0,
        ),
        AGE,
        column(
            "IP",
            "string",
            "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            1,
        ),
        column(
            "Node",
            "string",
            "NodeName is a request to schedule this pod onto a specific node.",
            1,
        ),
        column(
            "Nominated Node",
            "string",
            "nominatedNodeName is set when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
            1,
        ),
        column(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness.",
            1,
        ),
    ],
    cells: pod_cells,
};

/// Whether a pod or job has a condition of `kind` with status True (the first of that type
/// decides).
fn condition_true(object: &Value, kind: &str) -> bool {
    list(object, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == Some(kind))
        .is_some_and(|c| text(c, &["status"]) == Some("True"))
}

/// The later of `latest` and the finish time of a status's last termination.
fn last_finish(latest: Option<i64>, status: &Value) -> Option<i64> {
    let finished =
        text(status, &["lastState", "terminated", "finishedAt"]).and_then(super::parse_rfc3339);
    match (latest, finished) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let spec_containers = list(pod, &["spec", "containers"]);
    let init_specs = list(pod, &["spec", "initContainers"]);
    let mut total = spec_containers.len();
    let mut ready = 0;
    let (mut restarts, mut sidecar_restarts) = (0i64, 0i64);
    let (mut last_restart, mut last_sidecar_restart) = (None, None);
    let phase = text(pod, &["status", "phase"]).unwrap_or("");
    let mut reason = match text(pod, &["status", "reason"]) {
        Some(reason) if !reason.is_empty() => reason.to_owned(),
        _ => phase.to_owned(),
    };
    let gated = list(pod, &["status", "conditions"]).iter().any(|c| {
        text(c, &["type"]) == Some("PodScheduled")
            && text(c, &["reason"]) == Some("SchedulingGated")
    });
    if gated {
        reason = "SchedulingGated".to_owned();
    }
    let restartable = |name: &str| {
        init_specs.iter().any(|c| {
            text(c, &["name"]) == Some(name) && text(c, &["restartPolicy"]) == Some("Always")
        })
    };
    total += init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == Some("Always")).count();

    let mut initializing = false;
    for (index, status) in list(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let count = int(status, &["restartCount"]);
        restarts += count;
        last_restart = last_finish(last_restart, status);
        let sidecar = restartable(text(status, &["name"]).unwrap_or(""));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_finish(last_sidecar_restart, status);
        }
        let terminated = at(status, &["state", "terminated"]);
        let waiting_reason = text(status, &["state", "waiting", "reason"]).unwrap_or("");
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && at(status, &["started"]).and_then(Value::as_bool) == Some(true) {
            if at(status, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match text(terminated, &["reason"]) {
                Some(why) if !why.is_empty() => format!("Init:{why}"),
                _ if int(terminated, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(terminated, &["signal"]))
                }
                _ => format!("Init:ExitCode:{}", int(terminated, &["exitCode"])),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in list(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(status, &["restartCount"]);
            last_restart = last_finish(last_restart, status);
            let waiting = text(status, &["state", "waiting", "reason"]).unwrap_or("");
            let terminated = at(status, &["state", "terminated"]);
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, &["reason"]) {
                    Some(why) if !why.is_empty() => why.to_owned(),
                    _ if int(terminated, &["signal"]) != 0 => {
                        format!("Signal:{}", int(terminated, &["signal"]))
                    }
                    _ => format!("ExitCode:{}", int(terminated, &["exitCode"])),
                };
            } else if at(status, &["ready"]).and_then(Value::as_bool) == Some(true)
                && at(status, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if deleting(pod) {
        if text(pod, &["status", "reason"]) == Some("NodeLost") {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_cell = match last_restart {
        Some(when) if restarts != 0 => {
            format!("{restarts} ({} ago)", super::human_duration(now - when))
        }
        _ => restarts.to_string(),
    };
    let ip =
        list(pod, &["status", "podIPs"]).first().and_then(|ip| text(ip, &["ip"])).unwrap_or("");
    let gates = list(pod, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = gates
            .iter()
            .filter(|gate| condition_true(pod, text(gate, &["conditionType"]).unwrap_or("")))
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        object_age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, &["spec", "nodeName"]).unwrap_or(""))),
        json!(or_none(text(pod, &["status", "nominatedNodeName"]).unwrap_or(""))),
        json!(gates_cell),
    ]
}

const NODE: Printer = Printer {
    columns: &[
        NAME,
        column("Status", "string", "The status of the node", 0),
        column("Roles", "string", "The roles of the node", 0),
        AGE,
        column("Version", "string", "Kubelet Version reported by the node.", 0),
        column(
            "Internal-IP",
            "string",
            "List of addresses reachable to the node. Queried from cloud provider, if available.",
            1,
        ),
        column(
            "External-IP",
            "string",
            "List of addresses reachable to the node. Queried from cloud provider, if available.",
            1,
        ),
        column(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            1,
        ),
        column(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            1,
        ),
        column(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            1,
        ),
    ],
    cells: |node, now| {
        let ready = list(node, &["status", "conditions"])
            .iter()
            .rev()
            .find(|c| text(c, &["type"]) == Some("Ready"))
            .map(|c| text(c, &["status"]) == Some("True"));
        let mut status = match ready {
            Some(true) => "Ready",
            Some(false) => "NotReady",
            None => "Unknown",
        }
        .to_owned();
        if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let mut roles: Vec<&str> = Vec::new();
        if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
            for (key, value) in labels {
                match key.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => roles.push(role),
                    _ if key == "kubernetes.io/role" => {
                        roles.extend(value.as_str().filter(|v| !v.is_empty()))
                    }
                    _ => {}
                }
            }
        }
        roles.sort_unstable();
        roles.dedup();
        let address = |kind: &str| {
            list(node, &["status", "addresses"])
                .iter()
                .find(|a| text(a, &["type"]) == Some(kind))
                .and_then(|a| text(a, &["address"]))
                .map_or_else(|| "<none>".to_owned(), str::to_owned)
        };
        let info = |field: &str| match text(node, &["status", "nodeInfo", field]) {
            Some(value) if !value.is_empty() => value.to_owned(),
            _ => "<unknown>".to_owned(),
        };
        vec![
            name(node),
            json!(status),
            json!(or_none(&roles.join(","))),
            object_age(node, now),
            json!(text(node, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or("")),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    },
};

const SERVICE: Printer = Printer {
    columns: &[
        NAME,
        column("Type", "string", "The type of the service", 0),
        column("Cluster-IP", "string", "The cluster IP of the service", 0),
        column("External-IP", "string", "The external IPs of the service", 0),
        column("Port(s)", "string", "The ports of the service", 0),
        AGE,
        column(
            "Selector",
            "string",
            "Route service traffic to pods with label keys and values matching this selector.",
            1,
        ),
    ],
    cells: |service, now| {
        let kind = text(service, &["spec", "type"]).unwrap_or("");
        let cluster_ip =
            list(service, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or("");
        let external_ips: Vec<&str> =
            list(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
        let external = match kind {
            "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
            "LoadBalancer" => {
                let mut ingress: Vec<&str> = list(service, &["status", "loadBalancer", "ingress"])
                    .iter()
                    .filter_map(|i| {
                        text(i, &["ip"])
                            .filter(|ip| !ip.is_empty())
                            .or_else(|| text(i, &["hostname"]).filter(|h| !h.is_empty()))
                    })
                    .collect();
                ingress.sort_unstable();
                ingress.dedup();
                if !external_ips.is_empty() {
                    ingress
                        .into_iter()
                        .chain(external_ips.iter().copied())
                        .collect::<Vec<_>>()
                        .join(",")
                } else if !ingress.is_empty() {
                    ingress.join(",")
                } else {
                    "<pending>".to_owned()
                }
            }
            "ExternalName" => text(service, &["spec", "externalName"]).unwrap_or("").to_owned(),
            _ => "<unknown>".to_owned(),
        };
        let ports: Vec<String> = list(service, &["spec", "ports"])
            .iter()
            .map(|p| {
                let protocol = text(p, &["protocol"]).unwrap_or("TCP");
                match int(p, &["nodePort"]) {
                    0 => format!("{}/{protocol}", int(p, &["port"])),
                    node_port => format!("{}:{node_port}/{protocol}", int(p, &["port"])),
                }
            })
            .collect();
        vec![
            name(service),
            json!(kind),
            json!(or_none(cluster_ip)),
            json!(external),
            json!(or_none(&ports.join(","))),
            object_age(service, now),
            json!(format_labels(at(service, &["spec", "selector"]))),
        ]
    },
};

const DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        column("Ready", "string", "Number of the pod with ready state", 0),
        column(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            0,
        ),
        column(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |deployment, now| {
        let (names, images) = containers(at(deployment, &["spec", "template", "spec"]));
        vec![
            name(deployment),
            json!(format!(
                "{}/{}",
                int(deployment, &["status", "readyReplicas"]),
                int(deployment, &["spec", "replicas"])
            )),
            json!(int(deployment, &["status", "updatedReplicas"])),
            json!(int(deployment, &["status", "availableReplicas"])),
            object_age(deployment, now),
            names,
            images,
            json!(selector_string(at(deployment, &["spec", "selector"]))),
        ]
    },
};

const REPLICA_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "Replicas is the number of desired replicas.", 0),
    column("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
    column("Ready", "integer", "The number of ready replicas for this replica set.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_cells(object: &Value, now: i64, selector: String) -> Vec<Value> {
    let (names, images) = containers(at(object, &["spec", "template", "spec"]));
    vec![
        name(object),
        json!(int(object, &["spec", "replicas"])),
        json!(int(object, &["status", "replicas"])),
        json!(int(object, &["status", "readyReplicas"])),
        object_age(object, now),
        names,
        images,
        json!(selector),
    ]
}

const REPLICA_SET: Printer = Printer {
    columns: REPLICA_COLUMNS,
    cells: |rs, now| replica_cells(rs, now, format_label_selector(at(rs, &["spec", "selector"]))),
};

const REPLICATION_CONTROLLER: Printer = Printer {
    columns: REPLICA_COLUMNS,
    cells: |rc, now| replica_cells(rc, now, format_labels(at(rc, &["spec", "selector"]))),
};

const STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        column("Ready", "string", "Number of the pod with ready state", 0),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    cells: |sts, now| {
        let (names, images) = containers(at(sts, &["spec", "template", "spec"]));
        vec![
            name(sts),
            json!(format!(
                "{}/{}",
                int(sts, &["status", "readyReplicas"]),
                int(sts, &["spec", "replicas"])
            )),
            object_age(sts, now),
            names,
            images,
        ]
    },
};

const DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Desired",
            "integer",
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
            0,
        ),
        column(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            0,
        ),
        column(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            0,
        ),
        column(
            "Up-to-date",
            "integer",
            "The total number of nodes that are running updated daemon pod",
            0,
        ),
        column(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            0,
        ),
        column(
            "Node Selector",
            "string",
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |ds, now| {
        let (names, images) = containers(at(ds, &["spec", "template", "spec"]));
        vec![
            name(ds),
            json!(int(ds, &["status", "desiredNumberScheduled"])),
            json!(int(ds, &["status", "currentNumberScheduled"])),
            json!(int(ds, &["status", "numberReady"])),
            json!(int(ds, &["status", "updatedNumberScheduled"])),
            json!(int(ds, &["status", "numberAvailable"])),
            json!(format_labels(at(ds, &["spec", "template", "spec", "nodeSelector"]))),
            object_age(ds, now),
            names,
            images,
            json!(format_label_selector(at(ds, &["spec", "selector"]))),
        ]
    },
};

const JOB: Printer = Printer {
    columns: &[
        NAME,
        column("Status", "string", "Status of the job.", 0),
        column(
            "Completions",
            "string",
            "The successful completions and the desired completions of the job.",
            0,
        ),
        column("Duration", "string", "Time required to complete the job.", 0),
        AGE,
        CONTAINERS,
        IMAGES,
        column("Selector", "string", "A label query over pods that should match the pod count.", 1),
    ],
    cells: |job, now| {
        let status = if condition_true(job, "Complete") {
            "Complete"
        } else if condition_true(job, "Failed") {
            "Failed"
        } else if deleting(job) {
            "Terminating"
        } else if condition_true(job, "Suspended") {
            "Suspended"
        } else if condition_true(job, "FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let succeeded = int(job, &["status", "succeeded"]);
        let completions = match at(job, &["spec", "completions"]).and_then(Value::as_i64) {
            Some(completions) => format!("{succeeded}/{completions}"),
            None if int(job, &["spec", "parallelism"]) > 1 => {
                format!("{succeeded}/1 of {}", int(job, &["spec", "parallelism"]))
            }
            None => format!("{succeeded}/1"),
        };
        let started = text(job, &["status", "startTime"]).and_then(super::parse_rfc3339);
        let finished = text(job, &["status", "completionTime"]).and_then(super::parse_rfc3339);
        let duration = match started {
            None => String::new(),
            Some(start) => super::human_duration(finished.unwrap_or(now) - start),
        };
        let (names, images) = containers(at(job, &["spec", "template", "spec"]));
        vec![
            name(job),
            json!(status),
            json!(completions),
            json!(duration),
            object_age(job, now),
            names,
            images,
            json!(format_label_selector(at(job, &["spec", "selector"]))),
        ]
    },
};

const CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Schedule",
            "string",
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            0,
        ),
        column(
            "Timezone",
            "string",
            "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            0,
        ),
        column(
            "Suspend",
            "boolean",
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
            0,
        ),
        column("Active", "integer", "A list of pointers to currently running jobs.", 0),
        column(
            "Last Schedule",
            "string",
            "Information when was the last time the job was successfully scheduled.",
            0,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        column("Selector", "string", "A label query over pods that should match the pod count.", 1),
    ],
    cells: |cron, now| {
        let suspend = match at(cron, &["spec", "suspend"]).and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = match text(cron, &["status", "lastScheduleTime"]) {
            Some(time) => age(Some(time), now),
            None => "<none>".to_owned(),
        };
        let template = at(cron, &["spec", "jobTemplate", "spec"]);
        let (names, images) = containers(template.and_then(|t| at(t, &["template", "spec"])));
        vec![
            name(cron),
            json!(text(cron, &["spec", "schedule"]).unwrap_or("")),
            json!(or_none(text(cron, &["spec", "timeZone"]).unwrap_or(""))),
            json!(suspend),
            json!(list(cron, &["status", "active"]).len()),
            json!(last),
            object_age(cron, now),
            names,
            images,
            json!(format_label_selector(template.and_then(|t| t.get("selector")))),
        ]
    },
};

const EVENT: Printer = Printer {
    columns: &[
        column(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
            0,
        ),
        column(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future.",
            0,
        ),
        column(
            "Reason",
            "string",
            "A short, machine understandable string that gives the reason for this event being generated.",
            0,
        ),
        column("Object", "string", "The object that this event is about.", 0),
        column("Subobject", "string", "The field of the object that this event is about.", 1),
        column("Source", "string", "The component reporting this event.", 1),
        column(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
            0,
        ),
        column("First Seen", "string", "The time at which the event was first recorded.", 1),
        column("Count", "string", "The number of times this event has occurred.", 1),
        Column { priority: 1, ..NAME },
    ],
    cells: |event, now| {
        let first_seen = match text(event, &["firstTimestamp"]) {
            Some(time) => age(Some(time), now),
            None => age(text(event, &["eventTime"]), now),
        };
        let mut last_seen = match text(event, &["lastTimestamp"]) {
            Some(time) => age(Some(time), now),
            None => first_seen.clone(),
        };
        let count = match at(event, &["series"]).filter(|s| !s.is_null()) {
            Some(series) => {
                last_seen = age(text(series, &["lastObservedTime"]), now);
                int(series, &["count"])
            }
            None => int(event, &["count"]).max(1),
        };
        let kind = text(event, &["involvedObject", "kind"]).unwrap_or("").to_ascii_lowercase();
        let object = match text(event, &["involvedObject", "name"]) {
            Some(name) if !name.is_empty() => format!("{kind}/{name}"),
            _ => kind,
        };
        let component = text(event, &["source", "component"])
            .filter(|c| !c.is_empty())
            .or_else(|| text(event, &["reportingController"]))
            .unwrap_or("");
        let host = text(event, &["source", "host"])
            .filter(|h| !h.is_empty())
            .or_else(|| text(event, &["reportingInstance"]))
            .unwrap_or("");
        let source =
            if host.is_empty() { component.to_owned() } else { format!("{component}, {host}") };
        vec![
            json!(last_seen),
            json!(text(event, &["type"]).unwrap_or("")),
            json!(text(event, &["reason"]).unwrap_or("")),
            json!(object),
            json!(text(event, &["involvedObject", "fieldPath"]).unwrap_or("")),
            json!(source),
            json!(text(event, &["message"]).unwrap_or("").trim()),
            json!(first_seen),
            json!(count),
            name(event),
        ]
    },
};

const ENDPOINTS: Printer = Printer {
    columns: &[NAME, column("Endpoints", "string", "Endpoints of the service", 0), AGE],
    cells: |endpoints, now| {
        let subsets = list(endpoints, &["subsets"]);
        let cell = if subsets.is_empty() {
            "<none>".to_owned()
        } else {
            let mut shown: Vec<String> = Vec::new();
            let mut total = 0;
            for subset in subsets {
                let addresses = list(subset, &["addresses"]);
                let ports = list(subset, &["ports"]);
                let ips = addresses.iter().map(|a| text(a, &["ip"]).unwrap_or(""));
                if ports.is_empty() {
                    for ip in ips {
                        total += 1;
                        if shown.len() < 3 {
                            shown.push(ip.to_owned());
                        }
                    }
                } else {
                    for port in ports {
                        for address in addresses {
                            total += 1;
                            if shown.len() < 3 {
                                let ip = text(address, &["ip"]).unwrap_or("");
                                let port = int(port, &["port"]);
                                shown.push(if ip.contains(':') {
                                    format!("[{ip}]:{port}")
                                } else {
                                    format!("{ip}:{port}")
                                });
                            }
                        }
                    }
                }
            }
            let mut cell = shown.join(",");
            if total > 3 {
                cell.push_str(&format!(" + {} more...", total - 3));
            }
            cell
        };
        vec![name(endpoints), json!(cell), object_age(endpoints, now)]
    },
};

/// `RWO,ROX,RWX,RWOP` in that order, for the modes present.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A quantity field in its canonical form (or as written, if it does not parse).
fn quantity(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?;
    Some(crate::Quantity::parse(text).map_or_else(|_| text.to_owned(), |q| q.to_string()))
}

/// The storage class of a volume or claim: the beta annotation wins over the field.
fn storage_class(object: &Value) -> String {
    text(object, &["metadata", "annotations", "volume.beta.kubernetes.io/storage-class"])
        .or_else(|| text(object, &["spec", "storageClassName"]))
        .unwrap_or("")
        .to_owned()
}

fn deleting(object: &Value) -> bool {
    at(object, &["metadata", "deletionTimestamp"]).is_some()
}

fn or_unset(value: Option<&str>) -> String {
    value.map_or_else(|| "<unset>".to_owned(), str::to_owned)
}

/// The first three entries joined with `,`, then ` + N more...`; `<unset>` when empty.
fn list_with_more(items: &[String]) -> String {
    if items.is_empty() {
        return "<unset>".to_owned();
    }
    let mut shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        shown.push_str(&format!(" + {} more...", items.len() - 3));
    }
    shown
}

/// An IntOrString field as text, or `N/A`.
fn int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".to_owned(),
    }
}

const PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Capacity",
            "string",
            "capacity is the description of the persistent volume's resources and capacity.",
            0,
        ),
        column(
            "Access Modes",
            "string",
            "accessModes contains all ways the volume can be mounted.",
            0,
        ),
        column(
            "Reclaim Policy",
            "string",
            "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            0,
        ),
        column(
            "Status",
            "string",
            "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            0,
        ),
        column(
            "Claim",
            "string",
            "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            0,
        ),
        column("StorageClass", "string", "StorageClass of the pv", 0),
        column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv", 0),
        column(
            "Reason",
            "string",
            "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            0,
        ),
        AGE,
        column(
            "VolumeMode",
            "string",
            "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            1,
        ),
    ],
    cells: |pv, now| {
        let claim = match at(pv, &["spec", "claimRef"]).filter(|c| !c.is_null()) {
            Some(claim) => format!(
                "{}/{}",
                text(claim, &["namespace"]).unwrap_or(""),
                text(claim, &["name"]).unwrap_or("")
            ),
            None => String::new(),
        };
        let status =
            if deleting(pv) { "Terminating" } else { text(pv, &["status", "phase"]).unwrap_or("") };
        vec![
            name(pv),
            json!(
                quantity(at(pv, &["spec", "capacity", "storage"]))
                    .unwrap_or_else(|| "0".to_owned())
            ),
            json!(access_modes(list(pv, &["spec", "accessModes"]))),
            json!(text(pv, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or("")),
            json!(status),
            json!(claim),
            json!(storage_class(pv)),
            json!(or_unset(text(pv, &["spec", "volumeAttributesClassName"]))),
            json!(text(pv, &["status", "reason"]).unwrap_or("")),
            object_age(pv, now),
            json!(or_unset(text(pv, &["spec", "volumeMode"]))),
        ]
    },
};

const PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Status",
            "string",
            "phase represents the current phase of PersistentVolumeClaim.",
            0,
        ),
        column(
            "Volume",
            "string",
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
            0,
        ),
        column(
            "Capacity",
            "string",
            "capacity represents the actual resources of the underlying volume.",
            0,
        ),
        column(
            "Access Modes",
            "string",
            "accessModes contains the actual access modes the volume backing the PVC has.",
            0,
        ),
        column("StorageClass", "string", "StorageClass of the pvc", 0),
        column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc", 0),
        AGE,
        column(
            "VolumeMode",
            "string",
            "volumeMode defines what type of volume is required by the claim.",
            1,
        ),
    ],
    cells: |pvc, now| {
        let volume = text(pvc, &["spec", "volumeName"]).unwrap_or("");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity(at(pvc, &["status", "capacity", "storage"]))
                    .unwrap_or_else(|| "0".to_owned()),
                access_modes(list(pvc, &["status", "accessModes"])),
            )
        };
        let status = if deleting(pvc) {
            "Terminating"
        } else {
            text(pvc, &["status", "phase"]).unwrap_or("")
        };
        vec![
            name(pvc),
            json!(status),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(storage_class(pvc)),
            json!(or_unset(text(pvc, &["spec", "volumeAttributesClassName"]))),
            object_age(pvc, now),
            json!(or_unset(text(pvc, &["spec", "volumeMode"]))),
        ]
    },
};

const INGRESS: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for ingress.",
            0,
        ),
        column(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
            0,
        ),
        column(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
            0,
        ),
        column("Ports", "string", "Ports of TLS configurations that open", 0),
        AGE,
    ],
    cells: |ingress, now| {
        let rules = list(ingress, &["spec", "rules"]);
        let mut hosts: Vec<&str> = Vec::new();
        let mut more = false;
        for rule in rules {
            if hosts.len() == 3 {
                more = true;
                break;
            }
            hosts.extend(text(rule, &["host"]).filter(|h| !h.is_empty()));
        }
        let hosts = if hosts.is_empty() {
            "*".to_owned()
        } else if more {
            format!("{} + {} more...", hosts.join(","), rules.len() - 3)
        } else {
            hosts.join(",")
        };
        let mut addresses: Vec<&str> = list(ingress, &["status", "loadBalancer", "ingress"])
            .iter()
            .filter_map(|i| {
                text(i, &["ip"])
                    .filter(|ip| !ip.is_empty())
                    .or_else(|| text(i, &["hostname"]).filter(|h| !h.is_empty()))
            })
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let ports = if list(ingress, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
        vec![
            name(ingress),
            json!(or_none(text(ingress, &["spec", "ingressClassName"]).unwrap_or(""))),
            json!(hosts),
            json!(addresses.join(",")),
            json!(ports),
            object_age(ingress, now),
        ]
    },
};

const INGRESS_CLASS: Printer = Printer {
    columns: &[
        NAME,
        column("Controller", "string", "Controller that is responsible for handling this class", 0),
        column("Parameters", "string", "A reference to a resource with additional parameters", 0),
        AGE,
    ],
    cells: |class, now| {
        let parameters = match at(class, &["spec", "parameters"]).filter(|p| !p.is_null()) {
            None => "<none>".to_owned(),
            Some(p) => {
                let group = text(p, &["apiGroup"])
                    .filter(|g| !g.is_empty())
                    .map(|g| format!(".{g}"))
                    .unwrap_or_default();
                format!(
                    "{}{group}/{}",
                    text(p, &["kind"]).unwrap_or(""),
                    text(p, &["name"]).unwrap_or("")
                )
            }
        };
        vec![
            name(class),
            json!(text(class, &["spec", "controller"]).unwrap_or("")),
            json!(parameters),
            object_age(class, now),
        ]
    },
};

const POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Min Available",
            "string",
            "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            0,
        ),
        column(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
            0,
        ),
        column(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
            0,
        ),
        AGE,
    ],
    cells: |pdb, now| {
        vec![
            name(pdb),
            json!(int_or_string(at(pdb, &["spec", "minAvailable"]))),
            json!(int_or_string(at(pdb, &["spec", "maxUnavailable"]))),
            json!(int(pdb, &["status", "disruptionsAllowed"])),
            object_age(pdb, now),
        ]
    },
};

const STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        column("Provisioner", "string", "Indicates the type of the provisioner.", 0),
        column("ReclaimPolicy", "string", "Indicates the type of the reclaim policy.", 0),
        column(
            "VolumeBindingMode",
            "string",
            "Indicates how PersistentVolumeClaims should be provisioned and bound.",
            0,
        ),
        column(
            "AllowVolumeExpansion",
            "string",
            "Indicates whether the storage class allow volume expand.",
            0,
        ),
        AGE,
    ],
    cells: |class, now| {
        let default = [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|key| text(class, &["metadata", "annotations", key]) == Some("true"));
        let mut shown = text(class, &["metadata", "name"]).unwrap_or("").to_owned();
        if default {
            shown.push_str(" (default)");
        }
        vec![
            json!(shown),
            json!(text(class, &["provisioner"]).unwrap_or("")),
            json!(text(class, &["reclaimPolicy"]).unwrap_or("Delete")),
            json!(text(class, &["volumeBindingMode"]).unwrap_or("Immediate")),
            json!(at(class, &["allowVolumeExpansion"]).and_then(Value::as_bool).unwrap_or(false)),
            object_age(class, now),
        ]
    },
};

const PRIORITY_CLASS: Printer = Printer {
    columns: &[
        NAME,
        column("Value", "integer", "value represents the integer value of this priority class.", 0),
        column(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
            0,
        ),
        AGE,
        column(
            "PreemptionPolicy",
            "string",
            "preemptionPolicy is the Policy for preempting pods with lower priority.",
            0,
        ),
    ],
    cells: |class, now| {
        vec![
            name(class),
            json!(int(class, &["value"])),
            json!(at(class, &["globalDefault"]).and_then(Value::as_bool).unwrap_or(false)),
            object_age(class, now),
            json!(text(class, &["preemptionPolicy"]).unwrap_or("")),
        ]
    },
};

const LEASE: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease.",
            0,
        ),
        AGE,
    ],
    cells: |lease, now| {
        vec![
            name(lease),
            json!(text(lease, &["spec", "holderIdentity"]).unwrap_or("")),
            object_age(lease, now),
        ]
    },
};

const CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        column("Controller", "string", "Controller of the object", 0),
        column(
            "Revision",
            "string",
            "Revision indicates the revision of the state represented by Data.",
            0,
        ),
        AGE,
    ],
    cells: |revision, now| {
        let controller = list(revision, &["metadata", "ownerReferences"])
            .iter()
            .find(|r| at(r, &["controller"]).and_then(Value::as_bool) == Some(true))
            .map_or_else(
                || "<none>".to_owned(),
                |owner| {
                    let group = text(owner, &["apiVersion"])
                        .and_then(|v| v.split_once('/'))
                        .map(|(g, _)| g)
                        .unwrap_or("");
                    let kind = text(owner, &["kind"]).unwrap_or("");
                    let qualified =
                        if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
                    format!(
                        "{}/{}",
                        qualified.to_ascii_lowercase(),
                        text(owner, &["name"]).unwrap_or("")
                    )
                },
            );
        vec![
            name(revision),
            json!(controller),
            json!(int(revision, &["revision"])),
            object_age(revision, now),
        ]
    },
};

const ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        column(
            "AddressType",
            "string",
            "addressType specifies the type of address carried by this EndpointSlice.",
            0,
        ),
        column(
            "Ports",
            "string",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
            0,
        ),
        column("Endpoints", "string", "endpoints is a list of unique endpoints in this slice.", 0),
        AGE,
    ],
    cells: |slice, now| {
        let ports: Vec<String> = list(slice, &["ports"])
            .iter()
            .map(|p| match (at(p, &["port"]).and_then(Value::as_i64), text(p, &["name"])) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) if !name.is_empty() => name.to_owned(),
                _ => "*".to_owned(),
            })
            .collect();
        let addresses: Vec<String> = list(slice, &["endpoints"])
            .iter()
            .flat_map(|e| {
                list(e, &["addresses"]).iter().filter_map(Value::as_str).map(str::to_owned)
            })
            .collect();
        vec![
            name(slice),
            json!(text(slice, &["addressType"]).unwrap_or("")),
            json!(list_with_more(&ports)),
            json!(list_with_more(&addresses)),
            object_age(slice, now),
        ]
    },
};

const ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        column("Role", "string", "Role of the binding", 0),
        AGE,
        column("Users", "string", "Users in the binding", 1),
        column("Groups", "string", "Groups in the binding", 1),
        column("ServiceAccounts", "string", "ServiceAccounts in the binding", 1),
    ],
    cells: |binding, now| {
        let subjects = list(binding, &["subjects"]);
        let of_kind = |kind: &str| {
            subjects
                .iter()
                .filter(|s| text(s, &["kind"]) == Some(kind))
                .map(|s| match kind {
                    "ServiceAccount" => match text(s, &["namespace"]).filter(|ns| !ns.is_empty()) {
                        Some(namespace) => {
                            format!("{namespace}/{}", text(s, &["name"]).unwrap_or(""))
                        }
                        None => text(s, &["name"]).unwrap_or("").to_owned(),
                    },
                    _ => text(s, &["name"]).unwrap_or("").to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            name(binding),
            json!(format!(
                "{}/{}",
                text(binding, &["roleRef", "kind"]).unwrap_or(""),
                text(binding, &["roleRef", "name"]).unwrap_or("")
            )),
            object_age(binding, now),
            json!(of_kind("User")),
            json!(of_kind("Group")),
            json!(of_kind("ServiceAccount")),
        ]
    },
};

const RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
            0,
        ),
        column(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            0,
        ),
        AGE,
    ],
    cells: |quota, now| {
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        if let Some(hard) = at(quota, &["status", "hard"]).and_then(Value::as_object) {
            let mut keys: Vec<&String> = hard.keys().collect();
            keys.sort();
            for key in keys {
                let used =
                    quantity(at(quota, &["status", "used", key])).unwrap_or_else(|| "0".to_owned());
                let limit = quantity(hard.get(key)).unwrap_or_default();
                let entry = format!("{key}: {used}/{limit}");
                if key.split_once('.').is_some_and(|(first, _)| first == "limits") {
                    limits.push(entry);
                } else {
                    requests.push(entry);
                }
            }
        }
        vec![
            name(quota),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
            object_age(quota, now),
        ]
    },
};

const NETWORK_POLICY: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Pod-Selector",
            "string",
            "Selects the pods to which this NetworkPolicy object applies.",
            0,
        ),
        AGE,
    ],
    cells: |policy, now| {
        vec![
            name(policy),
            json!(format_label_selector(at(policy, &["spec", "podSelector"]))),
            object_age(policy, now),
        ]
    },
};

const RUNTIME_CLASS: Printer = Printer {
    columns: &[
        NAME,
        column(
            "Handler",
            "string",
            "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            0,
        ),
        AGE,
    ],
    cells: |class, now| {
        vec![name(class), json!(text(class, &["handler"]).unwrap_or("")), object_age(class, now)]
    },
};

const POD_TEMPLATE: Printer = Printer {
    columns: &[
        NAME,
        column("Containers", "string", "Names of each container in the template.", 0),
        column("Images", "string", "Images referenced by each container in the template.", 0),
        column("Pod Labels", "string", "The labels for the pod template.", 0),
    ],
    cells: |template, _| {
        let (names, images) = containers(at(template, &["template", "spec"]));
        vec![
            name(template),
            names,
            images,
            json!(format_labels(at(template, &["template", "metadata", "labels"]))),
        ]
    },
};

/// The printer of a kind, when kube-apiserver has one (and Capstan has it yet; the others
/// get the default table).
pub(super) fn for_kind(group: &str, kind: &str) -> Option<Printer> {
    Some(match (group, kind) {
        ("", "Namespace") => NAMESPACE,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "Secret") => SECRET,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        ("", "Pod") => POD,
        ("", "Node") => NODE,
        ("", "Service") => SERVICE,
        ("", "Endpoints") => ENDPOINTS,
        // events.k8s.io Events name their fields differently (`regarding`, `note`); they get
        // this printer once the API server converts between the two forms.
        ("", "Event") => EVENT,
        ("", "ReplicationController") => REPLICATION_CONTROLLER,
        ("apps", "Deployment") => DEPLOYMENT,
        ("apps", "ReplicaSet") => REPLICA_SET,
        ("apps", "StatefulSet") => STATEFUL_SET,
        ("apps", "DaemonSet") => DAEMON_SET,
        ("batch", "Job") => JOB,
        ("batch", "CronJob") => CRON_JOB,
        ("", "PersistentVolume") => PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => PERSISTENT_VOLUME_CLAIM,
        ("", "ResourceQuota") => RESOURCE_QUOTA,
        ("", "PodTemplate") => POD_TEMPLATE,
        ("networking.k8s.io", "Ingress") => INGRESS,
        ("networking.k8s.io", "IngressClass") => INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => NETWORK_POLICY,
        ("policy", "PodDisruptionBudget") => POD_DISRUPTION_BUDGET,
        ("storage.k8s.io", "StorageClass") => STORAGE_CLASS,
        ("scheduling.k8s.io", "PriorityClass") => PRIORITY_CLASS,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("apps", "ControllerRevision") => CONTROLLER_REVISION,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("node.k8s.io", "RuntimeClass") => RUNTIME_CLASS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-22T22:00:00Z.
    const NOW: i64 = 1_795_384_800;

    fn cells(printer: Printer, object: Value) -> Vec<Value> {
        let cells = (printer.cells)(&object, NOW);
        assert_eq!(cells.len(), printer.columns.len(), "one cell per column");
        cells
    }

    fn pod(status: Value, spec: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2026-11-22T21:55:00Z"}, "spec": spec, "status": status})
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {}}})
    }

    /// (READY, STATUS, RESTARTS) of a pod.
    fn pod_summary(status: Value, spec: Value) -> (String, String, String) {
        let cells = cells(POD, pod(status, spec));
        let text = |i: usize| cells[i].as_str().unwrap().to_owned();
        (text(1), text(2), text(3))
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]})
    }

    #[test]
    fn pod_status_reasons() {
        let summary = |status: Value| pod_summary(status, two_containers());
        assert_eq!(
            summary(
                json!({"phase": "Running", "containerStatuses": [running("a", true, 0), running("b", true, 0)]})
            ),
            ("2/2".into(), "Running".into(), "0".into())
        );
        assert_eq!(
            summary(json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]})),
            ("0/2".into(), "ContainerCreating".into(), "0".into())
        );
        assert_eq!(
            summary(json!({"phase": "Running", "containerStatuses": [
                running("a", true, 0),
                {"name": "b", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-22T21:58:00Z"}}}]})),
            ("1/2".into(), "CrashLoopBackOff".into(), "4 (2m ago)".into())
        );
        assert_eq!(
            summary(json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
            ("0/2".into(), "Completed".into(), "0".into())
        );
        // A container that exited without a reason shows its exit code.
        assert_eq!(
            summary(json!({"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 3}}}, running("b", false, 0)]}))
            .1,
            "ExitCode:3"
        );
        // Completed while another container still runs: Running if the pod is Ready, else
        // NotReady.
        let mixed = |ready: &str| {
            summary(json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [running("a", true, 0), {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}))
            .1
        };
        assert_eq!(mixed("False"), "NotReady");
        assert_eq!(mixed("True"), "Running");
    }

    #[test]
    fn pod_init_containers_and_sidecars() {
        let spec = json!({"initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}],
                          "containers": [{"name": "app"}]});
        // The first init container still running: Init:0/2; READY counts the sidecar.
        assert_eq!(
            pod_summary(
                json!({"phase": "Pending", "initContainerStatuses": [running("setup", false, 0), {"name": "proxy", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                spec.clone()
            ),
            ("0/2".into(), "Init:0/2".into(), "0".into())
        );
        assert_eq!(
            pod_summary(
                json!({"phase": "Pending", "initContainerStatuses": [{"name": "setup", "restartCount": 2, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                spec.clone()
            ),
            ("0/2".into(), "Init:Error".into(), "2".into())
        );
        assert_eq!(
            pod_summary(json!({"phase": "Pending", "initContainerStatuses": [{"name": "setup", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}), spec.clone()).1,
            "Init:CrashLoopBackOff"
        );
        // Initialised, sidecar started and ready, app running: 2/2 Running; the finished init
        // container's restarts no longer count, the sidecar's do.
        assert_eq!(
            pod_summary(
                json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                       "initContainerStatuses": [
                           {"name": "setup", "restartCount": 3, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                           {"name": "proxy", "restartCount": 1, "started": true, "ready": true, "state": {"running": {}}}],
                       "containerStatuses": [running("app", true, 0)]}),
                spec
            ),
            ("2/2".into(), "Running".into(), "1".into())
        );
    }

    #[test]
    fn pod_deletion_gates_and_wide_cells() {
        let mut terminating = pod(
            json!({"phase": "Running", "podIPs": [{"ip": "10.42.0.7"}], "containerStatuses": [running("a", true, 0)]}),
            json!({"nodeName": "n1", "containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/ready"}]}),
        );
        terminating["metadata"]["deletionTimestamp"] = json!("2026-11-22T21:59:00Z");
        let cells = cells(POD, terminating);
        assert_eq!(cells[2], "Terminating");
        assert_eq!(cells[4], "5m");
        assert_eq!(&cells[5..], &[json!("10.42.0.7"), json!("n1"), json!("<none>"), json!("0/1")]);
        let gated = pod_summary(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(gated.1, "SchedulingGated");
        // Explicit nulls are absent, not "terminated with exit code 0" or "running".
        let nulls = pod_summary(
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": {"terminated": null, "running": null, "waiting": {"reason": "ContainerCreating"}}}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(nulls, ("0/1".into(), "ContainerCreating".into(), "0".into()));
    }

    #[test]
    fn node_cells() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": "2026-11-20T22:00:00Z",
                            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true", "kubernetes.io/role": "edge"}},
                          "spec": {"unschedulable": true},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                     "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                                     "nodeInfo": {"kubeletVersion": "v1.33.0-capstan", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": ""}}});
        assert_eq!(
            cells(NODE, node),
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,master"),
                json!("2d"),
                json!("v1.33.0-capstan"),
                json!("10.0.0.5"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("6.1.0"),
                json!("<unknown>")
            ]
        );
        let unknown = cells(NODE, json!({"metadata": {"name": "n2"}}));
        assert_eq!(unknown[1], "Unknown");
        assert_eq!(unknown[2], "<none>");
    }

    #[test]
    fn service_cells() {
        let service = |spec: Value, status: Value| {
            cells(SERVICE, json!({"metadata": {"name": "web"}, "spec": spec, "status": status}))
        };
        let node_port = service(
            json!({"type": "NodePort", "clusterIPs": ["10.43.0.10"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"tier": "fe", "app": "web"}}),
            json!({}),
        );
        assert_eq!(
            &node_port[1..5],
            &[
                json!("NodePort"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(node_port[6], "app=web,tier=fe");
        let headless = service(json!({"type": "ClusterIP", "clusterIPs": ["None"]}), json!({}));
        assert_eq!(&headless[2..5], &[json!("None"), json!("<none>"), json!("<none>")]);
        let pending =
            service(json!({"type": "LoadBalancer", "clusterIPs": ["10.43.0.11"]}), json!({}));
        assert_eq!(pending[3], "<pending>");
        let balanced = service(
            json!({"type": "LoadBalancer"}),
            json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}}),
        );
        assert_eq!(balanced[3], "1.2.3.4,lb.example.com");
        assert_eq!(
            service(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}))
                [3],
            "db.example.com"
        );
    }

    #[test]
    fn workload_cells() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}});
        let deployment = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": template,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let cells_of = cells(DEPLOYMENT, deployment);
        assert_eq!(&cells_of[1..4], &[json!("2/3"), json!(3), json!(2)]);
        assert_eq!(
            &cells_of[5..],
            &[json!("web,log"), json!("nginx:1,busybox"), json!("app=web,tier in (be,fe)")]
        );
        let rs = cells(
            REPLICA_SET,
            json!({"metadata": {"name": "web-abc"}, "spec": {"replicas": 3, "template": template}, "status": {"replicas": 3, "readyReplicas": 1}}),
        );
        assert_eq!(&rs[1..4], &[json!(3), json!(3), json!(1)]);
        assert_eq!(rs[7], "<none>");
        let job = cells(
            JOB,
            json!({"metadata": {"name": "pi"}, "spec": {"completions": 3, "template": template},
            "status": {"succeeded": 3, "startTime": "2026-11-22T21:50:00Z", "completionTime": "2026-11-22T21:51:05Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        assert_eq!(&job[1..4], &[json!("Complete"), json!("3/3"), json!("65s")]);
        let parallel = cells(
            JOB,
            json!({"metadata": {"name": "p"}, "spec": {"parallelism": 4}, "status": {"startTime": "2026-11-22T21:59:00Z"}}),
        );
        assert_eq!(&parallel[1..4], &[json!("Running"), json!("0/1 of 4"), json!("60s")]);
        let cron = cells(
            CRON_JOB,
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}, "status": {"lastScheduleTime": "2026-11-22T21:55:00Z", "active": [{}]}}),
        );
        assert_eq!(
            &cron[1..6],
            &[json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(1), json!("5m")]
        );
    }

    #[test]
    fn endpoints_and_events() {
        let endpoints = cells(
            ENDPOINTS,
            json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.1"}, {"ip": "10.42.0.2"}, {"ip": "fd00::3"}], "ports": [{"port": 80}, {"port": 443}]}]}),
        );
        assert_eq!(endpoints[1], "10.42.0.1:80,10.42.0.2:80,[fd00::3]:80 + 3 more...");
        assert_eq!(cells(ENDPOINTS, json!({"metadata": {"name": "x"}}))[1], "<none>");
        let event = cells(
            EVENT,
            json!({"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "message": " Back-off restarting failed container \n",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"}, "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-11-22T21:00:00Z", "lastTimestamp": "2026-11-22T21:59:30Z", "count": 7}),
        );
        assert_eq!(
            event,
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(7),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn storage_and_policy_cells() {
        let pv = cells(
            PERSISTENT_VOLUME,
            json!({"metadata": {"name": "pv1", "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
            "spec": {"capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                     "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "slow"},
            "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            &pv[1..9],
            &[
                json!("1536Mi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("fast"),
                json!("<unset>"),
                json!("")
            ]
        );
        let pending = cells(
            PERSISTENT_VOLUME_CLAIM,
            json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local"}, "status": {"phase": "Pending"}}),
        );
        assert_eq!(
            &pending[1..6],
            &[json!("Pending"), json!(""), json!(""), json!(""), json!("local")]
        );
        let quota = cells(
            RESOURCE_QUOTA,
            json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"}, "used": {"pods": "2", "requests.cpu": "500m"}}}),
        );
        assert_eq!(
            &quota[1..3],
            &[json!("pods: 2/10, requests.cpu: 500m/1"), json!("limits.memory: 0/2Gi")]
        );
        let pdb = cells(
            POD_DISRUPTION_BUDGET,
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
        );
        assert_eq!(&pdb[1..4], &[json!("50%"), json!("N/A"), json!(1)]);
        let class = cells(
            STORAGE_CLASS,
            json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path"}),
        );
        assert_eq!(
            &class[..5],
            &[
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }

    #[test]
    fn networking_and_rbac_cells() {
        let ingress = cells(
            INGRESS,
            json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": "nginx", "tls": [{}],
            "rules": [{"host": "a.example"}, {"host": "b.example"}, {}, {"host": "c.example"}, {"host": "d.example"}]}}),
        );
        assert_eq!(
            &ingress[1..5],
            &[
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!(""),
                json!("80, 443")
            ]
        );
        let slice = cells(
            ENDPOINT_SLICE,
            json!({"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "http"}],
            "endpoints": [{"addresses": ["10.42.0.1"]}, {"addresses": ["10.42.0.2", "10.42.0.3", "10.42.0.4"]}]}),
        );
        assert_eq!(
            &slice[1..4],
            &[json!("IPv4"), json!("80,http"), json!("10.42.0.1,10.42.0.2,10.42.0.3 + 1 more...")]
        );
        let binding = cells(
            ROLE_BINDING,
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}]}),
        );
        assert_eq!(binding[1], "ClusterRole/view");
        assert_eq!(&binding[3..], &[json!("alice, bob"), json!(""), json!("ci/runner")]);
        let revision = cells(
            CONTROLLER_REVISION,
            json!({"metadata": {"name": "r", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "controller": true}]}, "revision": 2}),
        );
        assert_eq!(&revision[1..3], &[json!("daemonset.apps/fluentd"), json!(2)]);
    }

    #[test]
    fn kinds_without_a_printer_get_the_default_table() {
        assert!(for_kind("rbac.authorization.k8s.io", "Role").is_none());
        let cells = (DEFAULT.cells)(
            &json!({"metadata": {"name": "r", "creationTimestamp": "2026-11-22T21:00:00Z"}}),
            NOW,
        );
        assert_eq!(cells, [json!("r"), json!("2026-11-22T21:00:00Z")]);
    }
}
