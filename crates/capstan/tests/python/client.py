"""The Python `kubernetes` client against a Capstan server: the CA ConfigMap the controller
manager publishes in a new namespace, create, JSON patch, strategic
merge patch (Service ports merged by port), server-side apply twice (idempotent) and
delete-collection by label. Usage: client.py KUBECONFIG. Exits non-zero on the first
failed expectation."""

import sys
import time

from kubernetes import client, config, dynamic

config.load_kube_config(config_file=sys.argv[1])
api = client.ApiClient()
core = client.CoreV1Api(api)
NS = "py"


def expect(condition, message):
    if not condition:
        raise SystemExit(f"failed: {message}")


core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))

# The controller manager publishes the cluster CA in every new namespace.
for _ in range(100):
    names = [c.metadata.name for c in core.list_namespaced_config_map(NS).items]
    if names == ["kube-root-ca.crt"]:
        break
    time.sleep(0.1)
expect(names == ["kube-root-ca.crt"], f"configmaps of a new namespace: {names}")

# create, then a JSON patch (a list body is sent as application/json-patch+json).
core.create_namespaced_config_map(
    NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1", "b": "2"})
)
core.patch_namespaced_config_map(
    "cfg",
    NS,
    [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "changed"},
        {"op": "remove", "path": "/data/b"},
    ],
)
data = core.read_namespaced_config_map("cfg", NS).data
expect(data == {"a": "changed"}, f"after the JSON patch: {data}")

# A strategic merge patch (a dict body) merges Service ports by port.
core.create_namespaced_service(
    NS,
    client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[
                client.V1ServicePort(name="a", port=80, target_port=8080),
                client.V1ServicePort(name="b", port=81, target_port=8081),
            ],
        ),
    ),
)
core.patch_namespaced_service(
    "web", NS, {"spec": {"ports": [{"name": "b", "port": 81, "targetPort": 9091}]}}
)
ports = sorted((p.port, p.target_port) for p in core.read_namespaced_service("web", NS).spec.ports)
expect(ports == [(80, 8080), (81, 9091)], f"ports after the strategic merge patch: {ports}")

# Server-side apply, twice: the second changes nothing, not even the resourceVersion.
configmaps = dynamic.DynamicClient(api).resources.get(api_version="v1", kind="ConfigMap")
applied = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "applied", "namespace": NS},
    "data": {"k": "v"},
}
first = configmaps.server_side_apply(body=applied, name="applied", namespace=NS, field_manager="python")
second = configmaps.server_side_apply(body=applied, name="applied", namespace=NS, field_manager="python")
expect(
    first.metadata.resourceVersion == second.metadata.resourceVersion,
    f"a repeated apply wrote: {first.metadata.resourceVersion} -> {second.metadata.resourceVersion}",
)
managers = [(m.manager, m.operation) for m in second.metadata.managedFields]
expect(managers == [("python", "Apply")], f"managedFields: {managers}")

# delete-collection by label.
for name, labels in [("x1", {"group": "x"}), ("x2", {"group": "x"}), ("y1", {"group": "y"})]:
    core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
core.delete_collection_namespaced_config_map(NS, label_selector="group=x")
left = sorted(c.metadata.name for c in core.list_namespaced_config_map(NS).items)
expect(left == ["applied", "cfg", "kube-root-ca.crt", "y1"], f"after delete-collection: {left}")
print("ok")
