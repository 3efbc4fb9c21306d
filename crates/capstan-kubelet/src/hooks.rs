//! Container lifecycle hooks (postStart, preStop): running one `LifecycleHandler` against a
//! container, as upstream's `pkg/kubelet/lifecycle` handler runner does. exec runs through
//! the runtime's `ExecSync`; httpGet is the prober's GET (any status code will do, only a
//! transport failure fails the hook; an HTTPS hook answered in plain HTTP is retried over
//! HTTP); sleep waits; tcpSocket is accepted by the API but not supported, and fails.

use crate::probes::http::{HttpGet, HttpGetError, Purpose};
use crate::probes::{ExecError, ProbeError, ProbeTarget, exec_in_container};
use crate::runtime::RuntimeError;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use std::time::Duration;
use tokio::time::Instant;

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The exec command ran and exited non-zero (upstream's `CodeExitError` wording).
    #[error("command '{command}' exited with {exit_code}: {stderr}")]
    Exited { command: String, exit_code: i32, stderr: String, output: String },
    #[error("command {command:?} timed out")]
    TimedOut { command: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The GET failed in transport; the text is the Go client's (`Get "<url>": ...`).
    #[error("{message}")]
    Http { message: String },
    #[error(transparent)]
    Target(#[from] ProbeError),
    #[error("container terminated before sleep hook finished")]
    SleepInterrupted,
    #[error("invalid handler: {reason}")]
    InvalidHandler { reason: &'static str },
}

/// Runs `handler` against the target; nothing of it outlives `timeout` (for preStop, the
/// pod's remaining grace period).
pub async fn run_hook(
    handler: &LifecycleHandler,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> Result<(), HookError> {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let joined = command.join(" ");
        match exec_in_container(target.runtime, target.container_id, command, timeout).await {
            Ok(output) if output.exit_code == 0 => Ok(()),
            Ok(output) => Err(HookError::Exited {
                command: joined,
                exit_code: output.exit_code,
                stderr: output.stderr,
                output: output.output,
            }),
            Err(ExecError::TimedOut { command }) => Err(HookError::TimedOut { command }),
            Err(ExecError::Runtime(error)) => Err(HookError::Runtime(error)),
        }
    } else if let Some(action) = &handler.http_get {
        let deadline = Instant::now() + timeout;
        let get = HttpGet::new(action, target.container, target.pod_ip, Purpose::Lifecycle)?;
        let result = match get.send(timeout).await {
            // Upstream retries over plain HTTP when an HTTPS hook gets an HTTP answer.
            Err(HttpGetError::HttpResponseToHttps { .. }) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                get.with_plain_http().send(remaining).await
            }
            other => other,
        };
        result.map(drop).map_err(|error| HookError::Http { message: error.to_string() })
    } else if let Some(sleep) = &handler.sleep {
        let duration = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        if duration <= timeout {
            tokio::time::sleep(duration).await;
            Ok(())
        } else {
            tokio::time::sleep(timeout).await;
            Err(HookError::SleepInterrupted)
        }
    } else if handler.tcp_socket.is_some() {
        Err(HookError::InvalidHandler {
            reason: "tcpSocket is not supported as a lifecycle handler",
        })
    } else {
        Err(HookError::InvalidHandler { reason: "no action set" })
    }
}

/// The event message (`FailedPostStartHook`, `FailedPreStopHook`) for a failed hook, in
/// upstream's words, e.g. `Exec lifecycle hook ([sh -c exit 3]) for Container "app" in Pod
/// "web_default(uid)" failed - error: command 'sh -c exit 3' exited with 3: , message: ""`.
pub fn hook_failure_message(
    handler: &LifecycleHandler,
    container: &Container,
    pod: &Pod,
    error: &HookError,
) -> String {
    let pod = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let container = &container.name;
    if let Some(exec) = &handler.exec {
        let command = exec.command.as_deref().unwrap_or_default().join(" ");
        let output = match error {
            HookError::Exited { output, .. } => output.as_str(),
            _ => "",
        };
        format!(
            "Exec lifecycle hook ([{command}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}"
        )
    } else if let Some(action) = &handler.http_get {
        let path = action.path.as_deref().unwrap_or_default();
        format!(
            "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
        )
    } else if let Some(sleep) = &handler.sleep {
        let seconds = sleep.seconds;
        format!(
            "Sleep lifecycle hook ({seconds}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
        )
    } else {
        format!("Cannot run handler: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::FakeRuntime;
    use crate::probes::http::tests::{answer, serve, unused_port};
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::net::{IpAddr, Ipv4Addr};

    async fn run(
        runtime: &FakeRuntime,
        handler: &LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), HookError> {
        let container = Container { name: "app".to_owned(), ..Container::default() };
        let target = ProbeTarget {
            runtime,
            container_id: "c1",
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            container: &container,
        };
        run_hook(handler, &target, timeout).await
    }

    fn exec(command: &str) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction { command: Some(vec![command.to_owned(), "now".to_owned()]) }),
            ..LifecycleHandler::default()
        }
    }

    fn http_get(port: u16, scheme: &str) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/hook".to_owned()),
                scheme: Some(scheme.to_owned()),
                ..HTTPGetAction::default()
            }),
            ..LifecycleHandler::default()
        }
    }

    #[tokio::test]
    async fn exec_hooks_succeed_on_exit_zero_and_report_upstream_words_otherwise() {
        let runtime = FakeRuntime::default();
        runtime.script("drain", &[0]);
        runtime.script("fail", &[3]);
        run(&runtime, &exec("drain"), Duration::from_secs(5)).await.unwrap();
        let error = run(&runtime, &exec("fail"), Duration::from_secs(5)).await.unwrap_err();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some("u1".to_owned()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let container = Container { name: "app".to_owned(), ..Container::default() };
        assert_eq!(
            hook_failure_message(&exec("fail"), &container, &pod, &error),
            "Exec lifecycle hook ([fail now]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: command 'fail now' exited with 3: , message: \"fail says 3\""
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exec_hooks_time_out() {
        let runtime = FakeRuntime::default();
        let error = run(&runtime, &exec("hang"), Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(error.to_string(), "command \"hang now\" timed out");
    }

    #[tokio::test]
    async fn http_hooks_ignore_the_status_but_not_transport_failures() {
        let runtime = FakeRuntime::default();
        let (port, server) = serve(vec![answer("500 Internal Server Error", "", "")]).await;
        run(&runtime, &http_get(port, "HTTP"), Duration::from_secs(5)).await.unwrap();
        let head = server.await.unwrap().remove(0);
        assert!(
            head.contains("User-Agent: kube-lifecycle/1.33\r\n")
                || head.contains("user-agent: kube-lifecycle/1.33\r\n"),
            "{head}"
        );

        let port = unused_port().await;
        let error =
            run(&runtime, &http_get(port, "HTTP"), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "Get \"http://127.0.0.1:{port}/hook\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn https_hooks_fall_back_to_http_when_answered_in_plain_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // A plain HTTP server answers the TLS ClientHello with a 400, then the retry.
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await.unwrap();
            stream.write_all(answer("400 Bad Request", "", "").as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 512];
            let read = stream.read(&mut head).await.unwrap();
            stream.write_all(answer("200 OK", "", "").as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head[..read]).into_owned()
        });
        run(&FakeRuntime::default(), &http_get(port, "HTTPS"), Duration::from_secs(5))
            .await
            .unwrap();
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /hook HTTP/1.1"), "{head}");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_within_the_timeout() {
        let runtime = FakeRuntime::default();
        let sleep = |seconds| LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..LifecycleHandler::default()
        };
        let start = Instant::now();
        run(&runtime, &sleep(5), Duration::from_secs(30)).await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 5);
        let error = run(&runtime, &sleep(60), Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(error, HookError::SleepInterrupted));
        assert_eq!(start.elapsed().as_secs(), 35);
    }

    #[tokio::test]
    async fn tcp_socket_hooks_are_invalid_like_upstream() {
        let runtime = FakeRuntime::default();
        let handler = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(80), host: None }),
            ..LifecycleHandler::default()
        };
        let error = run(&runtime, &handler, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, HookError::InvalidHandler { .. }));
    }
}
