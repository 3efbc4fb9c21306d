//! The review kinds: questions asked by creating an object that is answered at once and
//! never stored — who am I (`SelfSubjectReview`), may I (`SelfSubjectAccessReview`,
//! `SubjectAccessReview`, `LocalSubjectAccessReview`), what may I (`SelfSubjectRulesReview`),
//! whose token is this (`TokenReview`). Until RBAC exists every authenticated user may do
//! everything; the answers have their final shape.

use super::write::decode_document;
use super::{Rest, now_seconds};
use crate::auth::User;
use crate::response::{self, Body};
use capstan_api::ApiError;
use capstan_api::registry::ResourceType;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// Why everything is allowed, in the answers' `reason`.
const ALLOWED: &str = "every authenticated user is allowed everything until RBAC exists";

pub(super) fn is_review(resource: &ResourceType) -> bool {
    matches!(resource.group, "authentication.k8s.io" | "authorization.k8s.io")
}

/// Answers a review: the request as sent, with its `status` filled in, 201.
pub(super) fn review(
    rest: &Rest,
    resource: &ResourceType,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let mut object = decode_document(content_type, body)?;
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]["creationTimestamp"] = Value::Null;
    let user_info = |user: &User| {
        let mut info = json!({"username": user.name, "groups": user.groups});
        if !user.uid.is_empty() {
            info["uid"] = json!(user.uid);
        }
        info
    };
    object["status"] = match resource.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            json!({"allowed": true, "reason": ALLOWED})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "TokenReview" => {
            let token = object.pointer("/spec/token").and_then(Value::as_str).unwrap_or_default();
            match rest.tokens.verify(token, now_seconds()) {
                Some(grant) if super::grant_is_current(rest, &grant) => json!({
                    "authenticated": true,
                    "user": user_info(&grant.user()),
                    "audiences": grant.audiences,
                }),
                _ => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        _ => return Err(ApiError::method_not_supported(resource, "create")),
    };
    Ok(response::json(StatusCode::CREATED, &object))
}
