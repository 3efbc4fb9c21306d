//! API errors as `metav1.Status`, with upstream's reasons, codes and message forms, so that
//! kubectl prints `Error from server (<Reason>): <message>` exactly as against kube-apiserver.

use crate::registry::ResourceType;
use serde_json::{Map, Value, json};

/// An error the API answers with: an HTTP status code and a `metav1.Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    /// The `metav1.StatusReason`: `NotFound`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every `Result` of the request path, and most have none.
    pub details: Option<Box<Details>>,
    /// Seconds for a `Retry-After` header and `details.retryAfterSeconds` (429).
    pub retry_after_seconds: Option<u32>,
}

/// `status.details`: which object the error is about, and field-level causes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    /// The resource (`pods`) for most errors; the kind (`Pod`) for `Invalid`, as upstream.
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

/// One `status.details.causes[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// What a field-level validation error says, as apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    Required,
    Invalid(Value),
    Duplicate(Value),
    /// The value and the values that are supported.
    NotSupported(Value, Vec<String>),
    Forbidden,
    TooLong(Value, usize),
    TooMany(usize, usize),
    TypeInvalid(Value),
    /// The value names something that does not exist (a mount naming no volume).
    NotFound(Value),
}

/// A field-level validation error: the path (`spec.containers[0].name`), what is wrong, and a
/// human detail.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Required, detail: detail.into() }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value.into()),
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Forbidden, detail: detail.into() }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate(value.into()),
            detail: String::new(),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let supported = supported.iter().map(|s| (*s).to_owned()).collect();
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(value.into(), supported),
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotFound(value.into()),
            detail: String::new(),
        }
    }

    /// The cause reason: `FieldValueRequired`, `FieldValueInvalid`, ...
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong(..) => "FieldValueTooLong",
            FieldErrorKind::TooMany(..) => "FieldValueTooMany",
            FieldErrorKind::TypeInvalid(_) => "FieldValueTypeInvalid",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
        }
    }

    /// The message without the field: `Required value`, `Invalid value: "X": detail`.
    pub fn body(&self) -> String {
        let with_detail = |head: String| {
            if self.detail.is_empty() { head } else { format!("{head}: {}", self.detail) }
        };
        match &self.kind {
            FieldErrorKind::Required => with_detail("Required value".into()),
            FieldErrorKind::Invalid(value) => {
                with_detail(format!("Invalid value: {}", show(value)))
            }
            FieldErrorKind::Duplicate(value) => {
                with_detail(format!("Duplicate value: {}", show(value)))
            }
            FieldErrorKind::NotSupported(value, supported) => {
                let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    show(value),
                    supported.join(", ")
                )
            }
            FieldErrorKind::Forbidden => with_detail("Forbidden".into()),
            FieldErrorKind::TooLong(_, max) => {
                with_detail(format!("Too long: may not be more than {max} bytes"))
            }
            FieldErrorKind::TooMany(actual, max) => {
                with_detail(format!("Too many: {actual}: must have at most {max} items"))
            }
            FieldErrorKind::TypeInvalid(value) => {
                with_detail(format!("Invalid value: {}", show(value)))
            }
            FieldErrorKind::NotFound(value) => with_detail(format!("Not found: {}", show(value))),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A value as upstream prints it in field errors: strings quoted, numbers and booleans bare.
fn show(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

/// `pods`, or `deployments.apps` for a grouped resource: how messages name a resource.
fn qualified(resource: &ResourceType) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

fn about(resource: &ResourceType, name: &str) -> Details {
    Details {
        name: Some(name.to_owned()),
        group: (!resource.group.is_empty()).then(|| resource.group.to_owned()),
        kind: Some(resource.plural.to_owned()),
        causes: Vec::new(),
    }
}

impl ApiError {
    /// Any status: prefer the named constructors, which carry upstream's message forms.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after_seconds: None }
    }

    /// 404: `pods "web" not found`.
    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        let mut error =
            Self::new(404, "NotFound", format!("{} {name:?} not found", qualified(resource)));
        error.details = Some(Box::new(about(resource, name)));
        error
    }

    /// 409: `pods "web" already exists`.
    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        let mut error = Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified(resource)),
        );
        error.details = Some(Box::new(about(resource, name)));
        error
    }

    /// 409: a write based on a stale resourceVersion.
    pub fn conflict(resource: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please \
             apply your changes to the latest version and try again",
            qualified(resource)
        );
        let mut error = Self::new(409, "Conflict", message);
        error.details = Some(Box::new(about(resource, name)));
        error
    }

    /// 422: `Pod "web" is invalid: [a: Required value, b: Invalid value: ...]`, with one cause
    /// per field error.
    pub fn invalid(resource: &ResourceType, name: &str, errors: &[FieldError]) -> Self {
        let listed = match errors {
            [one] => one.to_string(),
            many => {
                format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            }
        };
        let kind = if resource.group.is_empty() {
            resource.kind.to_owned()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        let mut error = Self::new(422, "Invalid", format!("{kind} {name:?} is invalid: {listed}"));
        error.details = Some(Box::new(Details {
            name: Some(name.to_owned()),
            group: (!resource.group.is_empty()).then(|| resource.group.to_owned()),
            kind: Some(resource.kind.to_owned()),
            causes: errors
                .iter()
                .map(|e| Cause {
                    reason: e.reason().to_owned(),
                    message: e.body(),
                    field: e.field.clone(),
                })
                .collect(),
        }));
        error
    }

    /// 400: a malformed request (bad selector, undecodable body, unknown field under Strict).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: `pods "web" is forbidden: User "x" cannot get resource "pods" ...`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 for a path that names no resource at all.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 405: a verb the resource does not serve.
    pub fn method_not_supported(resource: &ResourceType, verb: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind {:?}", qualified(resource)),
        )
    }

    /// 410: a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413: a body over the limit.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// 415: a body in a format the server does not decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 500: the server failed (the datastore is unreachable, ...); never for bad input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 504: the server could not answer in time (a resourceVersion the cache has not reached).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// 429: come back later.
    pub fn too_many_requests(retry_after_seconds: u32) -> Self {
        let mut error =
            Self::new(429, "TooManyRequests", "Too many requests, please try again later.");
        error.retry_after_seconds = Some(retry_after_seconds);
        error
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        let mut details = Map::new();
        if let Some(given) = &self.details {
            if let Some(name) = &given.name {
                details.insert("name".into(), json!(name));
            }
            if let Some(group) = &given.group {
                details.insert("group".into(), json!(group));
            }
            if let Some(kind) = &given.kind {
                details.insert("kind".into(), json!(kind));
            }
            if !given.causes.is_empty() {
                let causes = given
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        // Upstream omits an empty field.
                        if !c.field.is_empty() {
                            cause["field"] = json!(c.field);
                        }
                        cause
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
        }
        if let Some(seconds) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status["code"] = json!(self.code);
        status
    }

    /// The response body: compact JSON and a trailing newline, as kube-apiserver sends.
    pub fn body(&self) -> Vec<u8> {
        let mut body = self.to_status().to_string().into_bytes();
        body.push(b'\n');
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn pods() -> &'static ResourceType {
        find("", "v1", "pods").unwrap()
    }

    #[test]
    fn not_found_is_exactly_upstreams() {
        let body = String::from_utf8(ApiError::not_found(pods(), "x").body()).unwrap();
        assert_eq!(
            body,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\
             \"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    #[test]
    fn grouped_resources_are_qualified() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let error = ApiError::already_exists(deployments, "web");
        assert_eq!(error.message, "deployments.apps \"web\" already exists");
        assert_eq!(error.to_status()["details"]["group"], "apps");
        let conflict = ApiError::conflict(deployments, "web");
        assert_eq!(conflict.code, 409);
        assert!(conflict.message.starts_with("Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified"));
    }

    #[test]
    fn invalid_lists_field_errors_with_causes() {
        let errors = [
            FieldError::required("spec.containers[0].image", ""),
            FieldError::invalid(
                "metadata.name",
                "Web",
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            ),
        ];
        let error = ApiError::invalid(pods(), "Web", &errors);
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "Pod \"Web\" is invalid: [spec.containers[0].image: Required value, metadata.name: \
             Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters]"
        );
        let status = error.to_status();
        assert_eq!(status["details"]["kind"], "Pod");
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"})
        );
        assert_eq!(status["details"]["causes"][1]["reason"], "FieldValueInvalid");
        let single = ApiError::invalid(pods(), "x", &errors[..1]);
        assert_eq!(
            single.message,
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn invalid_names_a_grouped_kind_with_its_group() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let error =
            ApiError::invalid(deployments, "web", &[FieldError::required("spec.selector", "")]);
        assert_eq!(
            error.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
    }

    #[test]
    fn field_error_bodies() {
        assert_eq!(
            FieldError::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"]
            )
            .to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldError::duplicate("spec.ports[1].name", "http").to_string(),
            "spec.ports[1].name: Duplicate value: \"http\""
        );
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0")
                .to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::forbidden("spec.selector", "field is immutable").to_string(),
            "spec.selector: Forbidden: field is immutable"
        );
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let status = ApiError::too_many_requests(3).to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["details"]["retryAfterSeconds"], 3);
    }
}
