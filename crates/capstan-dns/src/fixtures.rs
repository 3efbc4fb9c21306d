//! Services and EndpointSlices shared by the unit tests.

use crate::records::Records;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

pub(crate) fn services() -> Vec<Service> {
    [
        json!({"metadata": {"namespace": "default", "name": "kubernetes"},
               "spec": {"clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
        json!({"metadata": {"namespace": "prod", "name": "web"},
               "spec": {"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10", "fd00::10"],
                        "ports": [{"name": "http", "port": 80},
                                  {"name": "dns", "port": 53, "protocol": "UDP"},
                                  {"port": 9090}]}}),
        json!({"metadata": {"namespace": "prod", "name": "db"},
               "spec": {"clusterIP": "None", "clusterIPs": ["None"],
                        "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"metadata": {"namespace": "prod", "name": "empty"},
               "spec": {"clusterIP": "None"}}),
        json!({"metadata": {"namespace": "prod", "name": "ext"},
               "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        json!({"metadata": {"namespace": "prod", "name": "alias"},
               "spec": {"type": "ExternalName", "externalName": "web.prod.svc.cluster.local"}}),
    ]
    .into_iter()
    .map(|value| serde_json::from_value(value).unwrap())
    .collect()
}

pub(crate) fn slices() -> Vec<EndpointSlice> {
    [
        json!({"metadata": {"namespace": "prod", "name": "db-abc",
                            "labels": {"kubernetes.io/service-name": "db"}},
               "addressType": "IPv4",
               "endpoints": [
                   {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                   {"addresses": ["10.42.0.6"], "hostname": "db-1"},
                   {"addresses": ["10.42.0.7"], "hostname": "db-2", "conditions": {"ready": false}},
                   {"addresses": ["10.42.0.8"]}],
               "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
        json!({"metadata": {"namespace": "prod", "name": "web-abc",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.42.0.20"]}],
               "ports": [{"name": "http", "port": 8080}]}),
    ]
    .into_iter()
    .map(|value| serde_json::from_value(value).unwrap())
    .collect()
}

pub(crate) fn records() -> Records {
    Records::build("cluster.local", 5, &services(), &slices()).with_serial(42)
}
