//! What can go wrong while simulating nodes, and a short way to describe API errors in logs.

use crate::config::ConfigError;

/// Why hollow nodes could not run, or one of their actions failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The first request, before any node registers, failed.
    #[error("cannot reach the API server")]
    Unreachable(#[source] kube::Error),
    /// A node could not be created, or its status or Lease could not be written, at start.
    #[error("cannot register node {node}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot update the status of pod {pod}")]
    PodStatus {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete pod {pod}")]
    DeletePod {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("no pod IP left in {range} (node {node}) for pod {pod}")]
    PodRangeExhausted { pod: String, node: String, range: String },
    /// The pod watch stopped although nothing asked it to.
    #[error("the pod watch ended")]
    PodWatchEnded,
}

/// The error and its causes on one line. An API error reads `<code> <reason>: <message>`
/// instead of kube's debug dump of the Status.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(kube::Error::Api(status)) = error.downcast_ref::<kube::Error>() {
            parts.push(format!("{} {}: {}", status.code, status.reason, status.message));
            break;
        }
        let part = error.to_string();
        // Some errors repeat their cause in their own message; say it once.
        if !parts.last().is_some_and(|last: &String| last.ends_with(&part)) {
            parts.push(part);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// Whether the API answered 404 Not Found.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether the API answered 409 (AlreadyExists or Conflict).
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether trying again later may succeed: the server was busy or failed, or the connection
/// did; a refusal of the request itself (4xx) will not change.
pub(crate) fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn describes_api_errors_briefly() {
        let error = SimError::PodStatus {
            pod: "default/web".to_owned(),
            source: api_error(422, "Invalid", "Pod \"web\" is invalid"),
        };
        assert_eq!(
            describe(&error),
            "cannot update the status of pod default/web: 422 Invalid: Pod \"web\" is invalid"
        );
        assert!(is_transient(&api_error(503, "ServiceUnavailable", "busy")));
        assert!(is_transient(&api_error(429, "TooManyRequests", "slow down")));
        assert!(!is_transient(&api_error(422, "Invalid", "no")));
        assert!(is_not_found(&api_error(404, "NotFound", "gone")));
        assert!(is_conflict(&api_error(409, "AlreadyExists", "there")));
    }
}
