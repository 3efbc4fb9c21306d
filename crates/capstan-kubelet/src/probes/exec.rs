//! Exec probes and the exec half of lifecycle hooks: a command run in the container through
//! the runtime's `ExecSync`, exit code 0 meaning success.

use super::{ProbeResult, ProbeTarget};
use crate::runtime::{Runtime, RuntimeError};
use k8s_openapi::api::core::v1::{EnvVar, ExecAction};
use std::time::Duration;

/// Upstream keeps at most this much of a probe command's output (10 KiB).
const MAX_OUTPUT_BYTES: usize = 10 * 1024;

/// Why a command in a container did not run to an exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    /// Upstream's wording for a command that outlived its timeout.
    #[error("command {command:?} timed out")]
    TimedOut { command: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A command's exit code and its stdout followed by its stderr (as upstream combines them).
#[derive(Debug)]
pub(crate) struct ExecOutput {
    pub(crate) exit_code: i32,
    pub(crate) output: String,
    pub(crate) stderr: String,
}

/// Runs `command` in the container and waits up to `timeout` for it.
pub(crate) async fn exec_in_container(
    runtime: &dyn Runtime,
    container_id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let joined = command.join(" ");
    let call = runtime.exec_sync(container_id, command, timeout);
    match tokio::time::timeout(timeout, call).await {
        Err(_elapsed) => Err(ExecError::TimedOut { command: joined }),
        // containerd reports its own expiry of the exec as DeadlineExceeded.
        Ok(Err(RuntimeError::Call { code: tonic::Code::DeadlineExceeded, .. })) => {
            Err(ExecError::TimedOut { command: joined })
        }
        Ok(Err(error)) => Err(ExecError::Runtime(error)),
        Ok(Ok(response)) => {
            let mut combined = response.stdout;
            combined.extend_from_slice(&response.stderr);
            combined.truncate(MAX_OUTPUT_BYTES);
            Ok(ExecOutput {
                exit_code: response.exit_code,
                output: String::from_utf8_lossy(&combined).into_owned(),
                stderr: String::from_utf8_lossy(&response.stderr).into_owned(),
            })
        }
    }
}

/// One exec probe attempt: exit code 0 is success, any other is a failure whose output is
/// the command's; a timeout is a failure too (upstream's `ExecProbeTimeout` behaviour).
pub(super) async fn probe(
    action: &ExecAction,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeResult {
    let env = target.container.env.as_deref().unwrap_or_default();
    let command = action.command.iter().flatten().map(|arg| expand_static(arg, env)).collect();
    match exec_in_container(target.runtime, target.container_id, command, timeout).await {
        Ok(output) if output.exit_code == 0 => ProbeResult::Success,
        Ok(output) => ProbeResult::Failure(output.output),
        Err(error @ ExecError::TimedOut { .. }) => ProbeResult::Failure(error.to_string()),
        Err(ExecError::Runtime(error)) => ProbeResult::Unknown(error.to_string()),
    }
}

/// Expands `$(NAME)` references to the container's literal env values (not `valueFrom`
/// ones, which the prober does not know), as upstream's `ExpandContainerCommandOnlyStatic`:
/// `$$` is a literal `$`, unknown names and unterminated references stay as written.
fn expand_static(input: &str, env: &[EnvVar]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .filter(|var| var.value_from.is_none())
            .rfind(|var| var.name == name)
            .map(|var| var.value.clone().unwrap_or_default())
    };
    let mut expanded = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        expanded.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            expanded.push('$');
            rest = tail;
        } else if let Some((name, tail)) =
            after.strip_prefix('(').and_then(|inner| inner.split_once(')'))
        {
            match lookup(name) {
                Some(value) => expanded.push_str(&value),
                None => {
                    expanded.push_str("$(");
                    expanded.push_str(name);
                    expanded.push(')');
                }
            }
            rest = tail;
        } else {
            expanded.push('$');
            rest = after;
        }
    }
    expanded.push_str(rest);
    expanded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_expand_static_env() {
        let env = vec![
            EnvVar { name: "PORT".to_owned(), value: Some("8080".to_owned()), value_from: None },
            EnvVar { name: "SECRET".to_owned(), value: None, value_from: Some(Default::default()) },
        ];
        let check = |input: &str, expected: &str| assert_eq!(expand_static(input, &env), expected);
        check("nc -z localhost $(PORT)", "nc -z localhost 8080");
        check("$(SECRET)", "$(SECRET)");
        check("$(MISSING) $$(PORT) $x", "$(MISSING) $(PORT) $x");
        check("unterminated $(PORT", "unterminated $(PORT");
    }
}
