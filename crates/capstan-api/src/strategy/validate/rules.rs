//! Field rules several kinds share, with upstream's messages: port numbers and IANA service
//! names, label maps and selectors, config keys, environment variable names, non-negative
//! numbers, integers or percentages, enumerations and immutable fields.

use crate::status::FieldError;
use crate::validation::{dns1123_label, dns1123_subdomain, label_value, qualified_name};
use serde_json::{Map, Value};

pub(crate) type Errors = Vec<FieldError>;

pub(crate) const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
pub(crate) const NON_NEGATIVE: &str = "must be greater than or equal to 0";
pub(crate) const IMMUTABLE: &str = "field is immutable";
pub(crate) const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// The string in `value`, or `""` when it is not one.
pub(crate) fn as_text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or("")
}

/// Each problem of `check(value)` as an Invalid error at `path`.
pub(crate) fn invalid_each(errors: &mut Errors, path: &str, value: &str, problems: Vec<String>) {
    errors.extend(problems.into_iter().map(|p| FieldError::invalid(path, value, p)));
}

pub(crate) fn dns_label(errors: &mut Errors, path: &str, value: &str) {
    invalid_each(errors, path, value, dns1123_label(value));
}

pub(crate) fn dns_subdomain(errors: &mut Errors, path: &str, value: &str) {
    invalid_each(errors, path, value, dns1123_subdomain(value));
}

/// `IsValidPortName`: an IANA service name.
pub(crate) fn port_name(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push("must be no more than 15 characters".to_owned());
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        problems.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens (-)".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen (-)".to_owned());
    }
    problems
}

/// Whether `value` is an integer in 1..=65535.
pub(crate) fn is_port_number(value: i64) -> bool {
    (1..=65535).contains(&value)
}

/// A port given by number or by name (`targetPort`, probe ports).
pub(crate) fn port_number_or_name(errors: &mut Errors, path: &str, value: Option<&Value>) {
    match value {
        Some(Value::String(name)) => invalid_each(errors, path, name, port_name(name)),
        Some(number) => {
            let port = number.as_i64().unwrap_or(0);
            if !is_port_number(port) {
                errors.push(FieldError::invalid(path, number.clone(), PORT_RANGE));
            }
        }
        None => errors.push(FieldError::invalid(path, 0, PORT_RANGE)),
    }
}

/// An optional number that may not be negative.
pub(crate) fn non_negative(errors: &mut Errors, path: &str, value: Option<&Value>) {
    if let Some(number) = value.filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
        errors.push(FieldError::invalid(path, number.clone(), NON_NEGATIVE));
    }
}

/// An enumerated string: Required when empty, NotSupported when unknown.
pub(crate) fn one_of(errors: &mut Errors, path: &str, value: Option<&Value>, supported: &[&str]) {
    match as_text(value) {
        "" => errors.push(FieldError::required(path, "")),
        text if !supported.contains(&text) => {
            errors.push(FieldError::not_supported(path, text, supported))
        }
        _ => {}
    }
}

/// An optional enumerated string: only NotSupported when set to something unknown.
pub(crate) fn optional_one_of(
    errors: &mut Errors,
    path: &str,
    value: Option<&Value>,
    supported: &[&str],
) {
    if value.is_some_and(|v| !v.is_null()) {
        one_of(errors, path, value, supported);
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; errors sit on the map.
pub(crate) fn labels(errors: &mut Errors, path: &str, map: Option<&Value>) {
    for (key, value) in map.and_then(Value::as_object).into_iter().flatten() {
        invalid_each(errors, path, key, qualified_name(key));
        let value = value.as_str().unwrap_or("");
        invalid_each(errors, path, value, label_value(value));
    }
}

/// `ValidateLabelSelector`.
pub(crate) fn label_selector(errors: &mut Errors, path: &str, selector: &Value) {
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    for (index, expression) in expressions.into_iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{index}]");
        let values = expression.get("values").and_then(Value::as_array);
        let value_count = values.map_or(0, Vec::len);
        match as_text(expression.get("operator")) {
            "In" | "NotIn" if value_count == 0 => errors.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if value_count > 0 => errors.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::invalid(
                format!("{at}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        let key = as_text(expression.get("key"));
        invalid_each(errors, &format!("{at}.key"), key, qualified_name(key));
        for (value_index, value) in values.into_iter().flatten().enumerate() {
            let value = value.as_str().unwrap_or("");
            let value_path = format!("{at}.values[{value_index}]");
            invalid_each(errors, &value_path, value, label_value(value));
        }
    }
    labels(errors, &format!("{path}.matchLabels"), selector.get("matchLabels"));
}

/// Whether a label selector selects nothing in particular (no labels, no expressions).
pub(crate) fn selector_is_empty(selector: &Value) -> bool {
    let count = |key: &str| match selector.get(key) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(list)) => list.len(),
        _ => 0,
    };
    count("matchLabels") + count("matchExpressions") == 0
}

/// Whether a label selector (`matchLabels` and `matchExpressions`) selects `labels`.
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let empty = Map::new();
    let labels = labels.and_then(Value::as_object).unwrap_or(&empty);
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let labels_match = match_labels
        .into_iter()
        .flatten()
        .all(|(key, value)| label(key).is_some() && label(key) == value.as_str());
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    let expressions_match = expressions.into_iter().flatten().all(|expression| {
        let key = as_text(expression.get("key"));
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match (as_text(expression.get("operator")), label(key)) {
            ("In", Some(value)) => values.contains(&value),
            ("NotIn", Some(value)) => !values.contains(&value),
            ("NotIn", None) | ("Exists", Some(_)) | ("DoesNotExist", None) => true,
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Whether a map selector (a ReplicationController's or a Service's) selects `labels`.
pub(crate) fn map_selector_matches(selector: &Map<String, Value>, labels: Option<&Value>) -> bool {
    selector.iter().all(|(key, value)| labels.and_then(|l| l.get(key)).is_some_and(|v| v == value))
}

/// `IsConfigMapKey`: keys of ConfigMaps and Secrets.
pub(crate) fn config_key(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if key.len() > 253 {
        problems.push("must be no more than 253 characters".to_owned());
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if key.is_empty() || !key.chars().all(valid) {
        problems.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned());
    }
    match key {
        "." => problems.push("must not be '.'".to_owned()),
        ".." => problems.push("must not be '..'".to_owned()),
        _ if key.starts_with("..") => problems.push("must not start with '..'".to_owned()),
        _ => {}
    }
    problems
}

/// `IsRelaxedEnvVarName`: what v1.33 accepts (the relaxed rule is on by default).
pub(crate) fn env_var_name(name: &str) -> Vec<String> {
    let printable = |c: char| (' '..='~').contains(&c) && c != '=';
    if name.chars().all(printable) {
        Vec::new()
    } else {
        vec![
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_owned(),
        ]
    }
}

/// The number of a percentage string (`25%` → 25).
pub(crate) fn percent(value: &str) -> Option<i64> {
    value
        .strip_suffix('%')
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))?
        .parse()
        .ok()
}

/// `ValidatePositiveIntOrPercent` and, with `at_most_100`, `IsNotMoreThan100Percent`.
pub(crate) fn int_or_percent(
    errors: &mut Errors,
    path: &str,
    value: Option<&Value>,
    at_most_100: bool,
) {
    match value {
        Some(Value::String(text)) => match percent(text) {
            None => errors.push(FieldError::invalid(path, text.as_str(), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")),
            Some(number) if at_most_100 && number > 100 => {
                errors.push(FieldError::invalid(path, text.as_str(), "must not be greater than 100%"))
            }
            Some(_) => {}
        },
        other => non_negative(errors, path, other),
    }
}

/// The amount an integer or percentage stands for when it is zero-checked (`0`, `0%`).
pub(crate) fn int_or_percent_is_zero(value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(text)) => percent(text) == Some(0),
        Some(number) => number.as_i64() == Some(0),
        None => true,
    }
}

/// `ValidateImmutableField`: Invalid with the new value when it changed.
pub(crate) fn immutable(errors: &mut Errors, path: &str, new: Option<&Value>, old: Option<&Value>) {
    let normalise = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    if normalise(new) != normalise(old) {
        errors.push(FieldError::invalid(path, new.cloned().unwrap_or(Value::Null), IMMUTABLE));
    }
}

/// A value with nulls, empty lists and empty maps removed: upstream's semantic equality
/// treats a nil list or map as equal to an empty one.
pub(crate) fn normalised(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), normalised(value)))
                .filter(|(_, value)| !is_nothing(value))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(normalised).collect()),
        other => other.clone(),
    }
}

fn is_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(list) => list.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Semantic equality of two optional values (see [`normalised`]).
pub(crate) fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let normal = |v: Option<&Value>| normalised(v.unwrap_or(&Value::Null));
    let (a, b) = (normal(a), normal(b));
    a == b || (is_nothing(&a) && is_nothing(&b))
}

/// A short account of which top-level fields of two objects differ, for the messages that
/// upstream follows with a diff.
pub(crate) fn diff(old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let (old, new) = (normalised(old), normalised(new));
    let old_map = old.as_object().unwrap_or(&empty);
    let new_map = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut lines = Vec::new();
    for key in keys {
        let (before, after) = (old_map.get(key), new_map.get(key));
        if before != after {
            if let Some(before) = before {
                lines.push(format!("-\t{key}: {before}"));
            }
            if let Some(after) = after {
                lines.push(format!("+\t{key}: {after}"));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_names_follow_iana() {
        assert!(port_name("http").is_empty());
        assert!(port_name("web-80").is_empty());
        assert_eq!(port_name("80"), ["must contain at least one letter (a-z)"]);
        assert_eq!(port_name("a--b"), ["must not contain consecutive hyphens (-)"]);
        assert_eq!(port_name("-ab"), ["must not begin or end with a hyphen (-)"]);
        assert_eq!(port_name("abcdefghijklmnop"), ["must be no more than 15 characters"]);
        assert_eq!(port_name("Http").len(), 1);
    }

    #[test]
    fn selectors_match_as_upstream() {
        let selector = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        });
        assert!(selector_matches(&selector, Some(&json!({"app": "web", "tier": "a"}))));
        assert!(!selector_matches(&selector, Some(&json!({"app": "web", "tier": "c"}))));
        assert!(!selector_matches(
            &selector,
            Some(&json!({"app": "web", "tier": "a", "canary": "1"}))
        ));
        assert!(!selector_matches(&selector, None));
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
    }

    #[test]
    fn keys_names_and_percentages() {
        assert!(config_key("game.properties").is_empty());
        assert_eq!(config_key("a b").len(), 1);
        assert_eq!(config_key("..a"), ["must not start with '..'"]);
        assert!(env_var_name("MY_VAR.1-x").is_empty());
        assert_eq!(env_var_name("A=B").len(), 1);
        assert_eq!(percent("25%"), Some(25));
        assert_eq!(percent("%"), None);
        assert_eq!(percent("25"), None);
    }
}
