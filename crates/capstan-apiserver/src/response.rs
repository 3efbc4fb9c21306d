//! Responses: one body type for whole and streamed bodies, JSON written as kube-apiserver
//! writes it (compact, with a trailing newline), and errors as `metav1.Status`.

use bytes::Bytes;
use capstan_api::ApiError;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(
        http_body_util::Full::new(body.into()).map_err(|never| match never {}).boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// No body at all.
pub(crate) fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// `value` as compact JSON with a trailing newline.
pub(crate) fn json_bytes(value: &Value) -> Vec<u8> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    body
}

pub(crate) fn json_as(
    status: StatusCode,
    value: &Value,
    content_type: &'static str,
) -> Response<Body> {
    respond(status, content_type, json_bytes(value))
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Response<Body> {
    json_as(status, value, "application/json")
}

pub(crate) fn error(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, "application/json", error.body());
    if let Some(seconds) = error.retry_after_seconds {
        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

/// Adds `Warning: 299 - "<text>"` headers, as kube-apiserver reports unknown fields under
/// `fieldValidation=Warn`.
pub(crate) fn add_warnings(response: &mut Response<Body>, warnings: &[String]) {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
}

/// A body streamed from a channel: each message is sent (and flushed) as it arrives; the
/// body ends when the sender is dropped. When the client goes away the receiver is dropped,
/// which the sending task sees as a failed send.
#[derive(Debug)]
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|message| message.map(|bytes| Ok(Frame::data(bytes))))
    }
}

pub(crate) fn streaming(
    content_type: &'static str,
    receiver: mpsc::Receiver<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(ChannelBody(receiver).boxed());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
