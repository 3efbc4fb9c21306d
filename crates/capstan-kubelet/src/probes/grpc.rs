//! gRPC probes: the standard `grpc.health.v1.Health/Check` over plain HTTP/2 to the pod IP;
//! `SERVING` is success.

use super::{KUBE_VERSION, ProbeError, ProbeResult, ProbeTarget, go_seconds, join_host_port};
use k8s_openapi::api::core::v1::GRPCAction;
use std::time::Duration;
use tonic::transport::Endpoint;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; `status` is the `ServingStatus` enum.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// The proto name of a `ServingStatus`, as upstream quotes it in failures.
fn serving_status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".to_owned(),
        1 => "SERVING".to_owned(),
        2 => "NOT_SERVING".to_owned(),
        3 => "SERVICE_UNKNOWN".to_owned(),
        other => other.to_string(),
    }
}

/// One gRPC probe attempt against the pod IP and `port`, asking about `service` (default
/// the empty name: the server as a whole).
pub(super) async fn probe(
    action: &GRPCAction,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeResult {
    let Some(pod_ip) = target.pod_ip else {
        return ProbeResult::Unknown(ProbeError::NoPodIp.to_string());
    };
    let Some(port) = u16::try_from(action.port).ok().filter(|p| *p > 0) else {
        return ProbeResult::Unknown(
            ProbeError::InvalidPort { port: i64::from(action.port) }.to_string(),
        );
    };
    let address = join_host_port(&pod_ip.to_string(), port);
    let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint,
        Err(error) => return ProbeResult::Unknown(error.to_string()),
    };
    let endpoint = match endpoint.user_agent(format!("kube-probe/{KUBE_VERSION}")) {
        Ok(endpoint) => endpoint.connect_timeout(timeout).timeout(timeout),
        Err(error) => return ProbeResult::Unknown(error.to_string()),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            return ProbeResult::Failure(format!(
                "error: failed to connect service at {address:?}: {error}"
            ));
        }
        Err(_elapsed) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {address:?} within {}: context deadline exceeded",
                go_seconds(timeout)
            ));
        }
    };
    let request = HealthCheckRequest { service: action.service.clone().unwrap_or_default() };
    let check = async move {
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        client.unary(tonic::Request::new(request), path, codec).await
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(response)) if response.get_ref().status == SERVING => ProbeResult::Success,
        Ok(Ok(response)) => ProbeResult::Failure(format!(
            "service unhealthy (responded with {:?})",
            serving_status_name(response.get_ref().status)
        )),
        Ok(Err(status)) => ProbeResult::Failure(match status.code() {
            tonic::Code::Unimplemented => format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            ),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                format!("timeout: health rpc did not complete within {}", go_seconds(timeout))
            }
            _ => format!("error: health rpc probe failed: {status}"),
        }),
        Err(_elapsed) => ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_seconds(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::run_probe;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::{Bytes, Frame, Incoming};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use k8s_openapi::api::core::v1::{Container, Probe};
    use prost::Message;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::TcpListener;

    /// A gRPC health server on loopback over HTTP/2 that answers every Check with the
    /// status the test maps the asked service to.
    async fn health_server(status_for: fn(&str) -> i32) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<Incoming>| async move {
                        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let asked = HealthCheckRequest::decode(&body[5..]).unwrap();
                        let reply = HealthCheckResponse { status: status_for(&asked.service) }
                            .encode_to_vec();
                        let mut framed = vec![0u8];
                        framed
                            .extend_from_slice(&u32::try_from(reply.len()).unwrap().to_be_bytes());
                        framed.extend_from_slice(&reply);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(framed))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = StreamBody::new(futures_util::stream::iter(frames));
                        let response = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        port
    }

    async fn grpc_probe(port: u16, service: &str) -> ProbeResult {
        let runtime = crate::probes::manager::tests::FakeRuntime::default();
        let container = Container::default();
        let target = ProbeTarget {
            runtime: &runtime,
            container_id: "c1",
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            container: &container,
        };
        let probe = Probe {
            grpc: Some(GRPCAction { port: i32::from(port), service: Some(service.to_owned()) }),
            ..Probe::default()
        };
        run_probe(&probe, &target).await
    }

    #[tokio::test]
    async fn grpc_probe_is_healthy_only_when_serving() {
        let port = health_server(|service| if service == "db" { 2 } else { SERVING }).await;
        assert_eq!(grpc_probe(port, "").await, ProbeResult::Success);
        assert_eq!(
            grpc_probe(port, "db").await,
            ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".to_owned())
        );
    }

    #[tokio::test]
    async fn grpc_probe_fails_when_nothing_listens() {
        let port = crate::probes::http::tests::unused_port().await;
        let ProbeResult::Failure(output) = grpc_probe(port, "").await else {
            panic!("a closed port must fail the probe");
        };
        assert!(output.contains(&format!("127.0.0.1:{port}")), "{output}");
    }
}
