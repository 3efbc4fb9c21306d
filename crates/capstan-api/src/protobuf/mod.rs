//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope
//! around a `runtime.Unknown`, and the object message inside, decoded into the JSON the same
//! object has on the wire.
//!
//! kubectl 1.32 and later send typed objects (`create namespace|configmap|deployment|...`,
//! `create token`, `auth can-i|whoami`, `drain`'s evictions) as protobuf. The decoder is
//! generic: a wire-format reader ([`wire`]) driven by message descriptors ([`descriptors`])
//! that `cargo xtask protobuf` generates from upstream's `generated.proto` files, vendored
//! under `crates/capstan-api/protobuf/` with the facts of their Go types that the JSON form
//! depends on: each field's JSON name, embedded (`,inline`) structs, and which non-pointer
//! fields are `omitempty`. [`object`] turns a message into JSON by those facts:
//!
//! - fields by their JSON names; `repeated` as arrays; `map<string, V>` as objects;
//! - gogo-protobuf writes every non-pointer field, zero or not, where Go's JSON leaves out
//!   the zero values of `omitempty` ones: such zeros (`nodeName: ""`, `hostPort: 0`,
//!   `tty: false`) are dropped, while pointer fields keep theirs (`replicas: 0`,
//!   `storageClassName: ""`, `automountServiceAccountToken: false`);
//! - `metav1.Time` as RFC 3339 (`2026-11-23T00:00:00Z`), a zero time left out as Go's null;
//!   `MicroTime` with six fractional digits; `metav1.Duration` as Go prints it (`1h0m0s`);
//!   `resource.Quantity` as its text; `IntOrString` as a number or a string;
//!   `RawExtension` as the embedded object (JSON, or a nested protobuf envelope, else its
//!   bytes in base64); `FieldsV1` and apiextensions' `JSON` as the JSON they carry; bytes
//!   (Secret `data`, `caBundle`) as base64; named slices (`ExtraValue`) as arrays;
//! - unknown field numbers are skipped.
//!
//! Arbitrary bytes never panic: every length is checked against what remains (a length
//! past the end is an error, not an allocation), nesting is limited to
//! [`object::MAX_DEPTH`], and the property test in `tests` feeds random and mutated bodies.

mod descriptors;
mod go_text;
mod object;
#[cfg(test)]
mod tests;
mod wire;

use serde_json::Value;

/// The four bytes before every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Why a body cannot be decoded: a 400 at the API, with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes a protobuf body into the object's JSON, `apiVersion` and `kind` included (from
/// the envelope's type meta).
///
/// Fails when the body is not a `k8s\0` envelope, is malformed (truncated, a length past
/// its end, a field of the wrong wire type, nesting deeper than [`object::MAX_DEPTH`]), names
/// a kind of no served group-version, or holds a value Go's JSON cannot write (a time
/// outside the years 0 to 9999, a NaN).
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let descriptors = descriptors::Descriptors::get()
        .map_err(|error| DecodeError(format!("the protobuf descriptors are unusable: {error}")))?;
    object::Decoder { descriptors }.envelope(body, 0)
}
