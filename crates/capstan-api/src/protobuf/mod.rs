//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope
//! around a `runtime.Unknown`, and the object message inside, decoded into the JSON the same
//! object has on the wire.

use serde_json::Value;

/// Why a body cannot be decoded: a 400 at the API, with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes a protobuf body into the object's JSON, `apiVersion` and `kind` included (from
/// the envelope's type meta).
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let _ = body;
    Err(DecodeError("protobuf bodies are not supported yet".into()))
}
