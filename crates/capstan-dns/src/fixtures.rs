//! Services and EndpointSlices shared by the unit tests, and a random generator for the
//! fuzz-style ones.

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

/// splitmix64: a small deterministic generator, so that a failing input reproduces.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound` (which must not be 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }

    pub(crate) fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    /// `bytes` with one to four random edits: cut short, a byte replaced, a compression
    /// pointer planted, a byte inserted.
    pub(crate) fn mutate(&mut self, bytes: &mut Vec<u8>) {
        for _ in 0..=self.below(4) {
            match self.below(4) {
                0 => bytes.truncate(self.below(bytes.len() + 1)),
                1 if !bytes.is_empty() => {
                    let at = self.below(bytes.len());
                    bytes[at] = self.byte();
                }
                2 if !bytes.is_empty() => {
                    // Pointers are what a parser most easily gets wrong.
                    let at = self.below(bytes.len());
                    bytes[at] = 0xC0 | (self.byte() & 0x01);
                }
                _ => {
                    let at = self.below(bytes.len() + 1);
                    bytes.insert(at, self.byte());
                }
            }
        }
    }
}
