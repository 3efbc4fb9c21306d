//! What a run of hollow nodes looks like: how many, their names, labels, taints and size, and
//! the kubelet timings they keep. The flag syntaxes of `--label` and `--taint` parse here.

use crate::network::MAX_NODE_INDEX;
use k8s_openapi::api::core::v1::Taint;
use std::str::FromStr;
use std::time::Duration;

/// Everything `run` needs to know. Build it with [`SimConfig::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// How many nodes to register.
    pub count: u32,
    /// Node names are `<name_prefix><index>`.
    pub name_prefix: String,
    /// The index of the first node; the others follow.
    pub start_index: u32,
    /// When positive, node `i` is in zone `zone-<i % zones>` (`topology.kubernetes.io/zone`).
    pub zones: u32,
    /// Labels every node gets besides the standard ones.
    pub labels: Vec<Label>,
    /// Taints every node registers with (the kubelet's `--register-with-taints`).
    pub taints: Vec<TaintFlag>,
    /// CPU capacity, a Kubernetes quantity such as `4` or `3500m`.
    pub cpu: String,
    /// Memory capacity, a Kubernetes quantity such as `16Gi`.
    pub memory: String,
    /// The `pods` capacity: how many pods the scheduler may put on a node.
    pub max_pods: u32,
    /// How long a pod whose `restartPolicy` is not `Always` runs before it succeeds.
    pub succeed_after: Duration,
    /// The `leaseDurationSeconds` of each node's Lease.
    pub lease_duration: Duration,
    /// How often each node renews its Lease (the kubelet renews at a quarter of the duration).
    pub lease_renew_interval: Duration,
    /// How often each node posts its status when nothing changed (the kubelet's
    /// `nodeStatusReportFrequency`).
    pub status_report_frequency: Duration,
    /// How many nodes register at once.
    pub registration_concurrency: usize,
    /// How many pod status updates and deletions are in flight at once.
    pub pod_workers: u16,
}

impl SimConfig {
    /// `count` nodes named `hollow-0`, `hollow-1`, … with the kubelet's default timings and
    /// a 4 CPU, 16 GiB, 110 pod capacity.
    pub fn new(count: u32) -> Self {
        SimConfig {
            count,
            name_prefix: "hollow-".to_owned(),
            start_index: 0,
            zones: 0,
            labels: Vec::new(),
            taints: Vec::new(),
            cpu: "4".to_owned(),
            memory: "16Gi".to_owned(),
            max_pods: 110,
            succeed_after: Duration::from_secs(5),
            lease_duration: Duration::from_secs(40),
            lease_renew_interval: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(5 * 60),
            registration_concurrency: 32,
            pod_workers: 64,
        }
    }

    /// Refuses configurations that cannot run: no nodes, indexes beyond the fake address
    /// space, zero intervals or concurrency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::NoNodes);
        }
        let last = u64::from(self.start_index) + u64::from(self.count) - 1;
        if last > u64::from(MAX_NODE_INDEX) {
            return Err(ConfigError::IndexTooLarge { last, limit: MAX_NODE_INDEX });
        }
        if self.lease_renew_interval.is_zero() || self.status_report_frequency.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.registration_concurrency == 0 || self.pod_workers == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        for (resource, amount) in [("cpu", &self.cpu), ("memory", &self.memory)] {
            if !is_quantity(amount) {
                return Err(ConfigError::Quantity { resource, amount: amount.clone() });
            }
        }
        Ok(())
    }

    /// The name of the node with this index.
    pub fn node_name(&self, index: u32) -> String {
        format!("{}{index}", self.name_prefix)
    }

    /// The indexes of the nodes, in order.
    pub fn indexes(&self) -> std::ops::Range<u32> {
        // `validate` keeps the last index far below u32::MAX; saturating keeps this total.
        self.start_index..self.start_index.saturating_add(self.count)
    }

    /// The zone of the node with this index, when zones are configured.
    pub fn zone(&self, index: u32) -> Option<String> {
        (self.zones > 0).then(|| format!("zone-{}", index % self.zones))
    }
}

/// Whether `text` is a non-negative Kubernetes quantity (`4`, `3500m`, `16Gi`, `1.5`, `2e3`),
/// checked here so that a typo fails at once with the flag's name instead of as a refused
/// Node.
fn is_quantity(text: &str) -> bool {
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => {
            // A decimal exponent: `e` or `E` and a signed integer.
            let Some(exponent) = suffix.strip_prefix(['e', 'E']) else { return false };
            let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !exponent.is_empty() && exponent.chars().all(|c| c.is_ascii_digit())
        }
    }
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the node count must be at least 1")]
    NoNodes,
    #[error(
        "node index {last} is beyond the largest one hollow nodes have addresses for ({limit})"
    )]
    IndexTooLarge { last: u64, limit: u32 },
    #[error("the lease renewal and status report intervals must be longer than zero")]
    ZeroInterval,
    #[error("the registration and pod worker concurrency must be at least 1")]
    ZeroConcurrency,
    #[error("{resource} capacity {amount:?} is not a quantity such as 4, 3500m or 16Gi")]
    Quantity { resource: &'static str, amount: String },
}

/// A `--label key=value` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl FromStr for Label {
    type Err = FlagError;

    /// `key=value`; the value may be empty (`key=`). The API server validates the syntax of
    /// both when the node registers.
    fn from_str(text: &str) -> Result<Self, FlagError> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(FlagError::Label { text: text.to_owned() });
        };
        if key.is_empty() {
            return Err(FlagError::Label { text: text.to_owned() });
        }
        Ok(Label { key: key.to_owned(), value: value.to_owned() })
    }
}

/// A `--taint key=value:Effect` flag (the kubelet's `--register-with-taints` syntax; the
/// value may be left out: `key:Effect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintFlag {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

impl FromStr for TaintFlag {
    type Err = FlagError;

    fn from_str(text: &str) -> Result<Self, FlagError> {
        let malformed = || FlagError::Taint { text: text.to_owned() };
        let (key_value, effect) = text.rsplit_once(':').ok_or_else(malformed)?;
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            other => {
                return Err(FlagError::TaintEffect {
                    text: text.to_owned(),
                    effect: other.to_owned(),
                });
            }
        };
        let (key, value) = match key_value.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (key_value, None),
        };
        if key.is_empty() {
            return Err(malformed());
        }
        Ok(TaintFlag { key: key.to_owned(), value, effect })
    }
}

impl From<&TaintFlag> for Taint {
    fn from(flag: &TaintFlag) -> Self {
        Taint {
            key: flag.key.clone(),
            value: flag.value.clone(),
            effect: flag.effect.as_str().to_owned(),
            time_added: None,
        }
    }
}

/// Why a `--label` or `--taint` flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("label {text:?} is not key=value")]
    Label { text: String },
    #[error("taint {text:?} is not key=value:Effect or key:Effect")]
    Taint { text: String },
    #[error(
        "taint {text:?} has the effect {effect:?}, not one of NoSchedule, PreferNoSchedule, NoExecute"
    )]
    TaintEffect { text: String, effect: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_label(text: &str, expected: Result<(&str, &str), &str>) {
        let actual = text
            .parse::<Label>()
            .map(|label| (label.key, label.value))
            .map_err(|error| error.to_string());
        let expected = expected.map(|(k, v)| (k.to_owned(), v.to_owned())).map_err(str::to_owned);
        assert_eq!(actual, expected, "parsing {text:?}");
    }

    #[test]
    fn labels() {
        check_label("team=storage", Ok(("team", "storage")));
        check_label("example.com/tier=", Ok(("example.com/tier", "")));
        check_label("a=b=c", Ok(("a", "b=c")));
        check_label("team", Err("label \"team\" is not key=value"));
        check_label("=x", Err("label \"=x\" is not key=value"));
    }

    fn check_taint(text: &str, expected: Result<serde_json::Value, &str>) {
        let actual = text
            .parse::<TaintFlag>()
            .map(|flag| serde_json::to_value(Taint::from(&flag)).unwrap())
            .map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "parsing {text:?}");
    }

    #[test]
    fn taints() {
        use serde_json::json;
        check_taint(
            "dedicated=infra:NoSchedule",
            Ok(json!({"effect": "NoSchedule", "key": "dedicated", "value": "infra"})),
        );
        check_taint("gpu:NoExecute", Ok(json!({"effect": "NoExecute", "key": "gpu"})));
        check_taint(
            "example.com/x=:PreferNoSchedule",
            Ok(json!({"effect": "PreferNoSchedule", "key": "example.com/x", "value": ""})),
        );
        check_taint(
            "dedicated=infra",
            Err("taint \"dedicated=infra\" is not key=value:Effect or key:Effect"),
        );
        check_taint(
            ":NoSchedule",
            Err("taint \":NoSchedule\" is not key=value:Effect or key:Effect"),
        );
        check_taint(
            "a=b:Sometimes",
            Err(
                "taint \"a=b:Sometimes\" has the effect \"Sometimes\", not one of NoSchedule, PreferNoSchedule, NoExecute",
            ),
        );
    }

    fn check_valid(config: SimConfig, expected: Result<(), &str>) {
        let actual = config.validate().map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned));
    }

    #[test]
    fn validation() {
        check_valid(SimConfig::new(1_000), Ok(()));
        check_valid(SimConfig::new(0), Err("the node count must be at least 1"));
        check_valid(
            SimConfig { start_index: MAX_NODE_INDEX, ..SimConfig::new(2) },
            Err(&format!(
                "node index {} is beyond the largest one hollow nodes have addresses for ({MAX_NODE_INDEX})",
                u64::from(MAX_NODE_INDEX) + 1
            )),
        );
        check_valid(
            SimConfig { lease_renew_interval: Duration::ZERO, ..SimConfig::new(1) },
            Err("the lease renewal and status report intervals must be longer than zero"),
        );
        check_valid(
            SimConfig { pod_workers: 0, ..SimConfig::new(1) },
            Err("the registration and pod worker concurrency must be at least 1"),
        );
    }

    #[test]
    fn quantities() {
        let cases = [
            ("4", true),
            ("3500m", true),
            ("16Gi", true),
            ("1.5", true),
            ("+2", true),
            (".5Ki", true),
            ("2e3", true),
            ("2E-3", true),
            ("lots", false),
            ("", false),
            ("-1", false),
            ("16GB", false),
            ("1.2.3", false),
            ("2e", false),
            ("Gi", false),
        ];
        for (text, expected) in cases {
            assert_eq!(is_quantity(text), expected, "{text:?}");
        }
        check_valid(
            SimConfig { memory: "16GB".to_owned(), ..SimConfig::new(1) },
            Err("memory capacity \"16GB\" is not a quantity such as 4, 3500m or 16Gi"),
        );
    }

    #[test]
    fn names_and_zones() {
        let config = SimConfig { start_index: 8, zones: 3, ..SimConfig::new(3) };
        let names: Vec<_> = config.indexes().map(|i| config.node_name(i)).collect();
        assert_eq!(names, ["hollow-8", "hollow-9", "hollow-10"]);
        let zones: Vec<_> = config.indexes().map(|i| config.zone(i)).collect();
        assert_eq!(
            zones,
            [Some("zone-2".to_owned()), Some("zone-0".to_owned()), Some("zone-1".to_owned())]
        );
        assert_eq!(SimConfig::new(1).zone(5), None);
    }
}
