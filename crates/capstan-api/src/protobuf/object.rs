//! A message decoded into the JSON its Go type marshals to, driven by the descriptors: field
//! numbers to JSON names, nested messages recursively, repeated fields as arrays, maps as
//! objects, and the special types (times, quantities, int-or-strings, embedded JSON) by
//! their own rules.

use super::descriptors::{Cardinality, Descriptors, Field, FieldType, Message, Scalar, Special};
use super::go_text;
use super::wire::{Reader, WireValue};
use super::{DecodeError, MAGIC};
use serde_json::{Map, Number, Value};

/// How deeply messages may nest. The API's types nest a dozen levels; more is an attack on
/// the stack, not an object.
pub(super) const MAX_DEPTH: usize = 100;

/// Decodes messages with one set of descriptors.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decoder<'d> {
    pub(super) descriptors: &'d Descriptors,
}

impl Decoder<'_> {
    /// A `k8s\0`-prefixed `runtime.Unknown`: the object inside, with `apiVersion` and `kind`
    /// from its type meta. `depth` counts the messages around it (0 for a request body).
    pub(super) fn envelope(&self, body: &[u8], depth: usize) -> Result<Value, DecodeError> {
        let unknown = body.strip_prefix(MAGIC).ok_or_else(|| {
            DecodeError("not a Kubernetes protobuf body: the k8s\\0 prefix is missing".into())
        })?;
        let (mut api_version, mut kind) = (String::new(), String::new());
        let (mut raw, mut content_encoding, mut content_type) =
            (&[][..], String::new(), String::new());
        let mut reader = Reader::new(unknown);
        while let Some((number, value)) = reader.next_field()? {
            match number {
                1 => {
                    let mut type_meta = Reader::new(bytes(value, "runtime.Unknown.typeMeta")?);
                    while let Some((number, value)) = type_meta.next_field()? {
                        match number {
                            1 => api_version = string(value, "runtime.TypeMeta.apiVersion")?,
                            2 => kind = string(value, "runtime.TypeMeta.kind")?,
                            _ => {}
                        }
                    }
                }
                2 => raw = bytes(value, "runtime.Unknown.raw")?,
                3 => content_encoding = string(value, "runtime.Unknown.contentEncoding")?,
                4 => content_type = string(value, "runtime.Unknown.contentType")?,
                _ => {}
            }
        }
        if !content_encoding.is_empty() {
            return Err(DecodeError(format!(
                "protobuf content encoding {content_encoding:?} is not supported"
            )));
        }
        if api_version.is_empty() || kind.is_empty() {
            return Err(DecodeError(
                "the protobuf body's type meta has no apiVersion or no kind".into(),
            ));
        }
        let object = if content_type.is_empty() || content_type.contains("protobuf") {
            let index = self.descriptors.kind(&api_version, &kind).ok_or_else(|| {
                DecodeError(format!("no protobuf message is known for {api_version} {kind}"))
            })?;
            self.message(index, raw, depth + 1)?
        } else if content_type.starts_with("application/json") {
            serde_json::from_slice(raw)
                .map_err(|error| DecodeError(format!("the embedded JSON is invalid: {error}")))?
        } else {
            return Err(DecodeError(format!(
                "protobuf body carries content type {content_type:?}"
            )));
        };
        let Value::Object(fields) = object else {
            return Err(DecodeError(format!("{api_version} {kind} is not an object")));
        };
        let mut out = Map::new();
        out.insert("apiVersion".into(), Value::String(api_version));
        out.insert("kind".into(), Value::String(kind));
        for (name, value) in fields {
            if name != "apiVersion" && name != "kind" {
                out.insert(name, value);
            }
        }
        Ok(Value::Object(out))
    }

    /// One message's JSON. `depth` counts the messages around this one.
    pub(super) fn message(
        &self,
        index: usize,
        bytes: &[u8],
        depth: usize,
    ) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError(format!("protobuf messages nest deeper than {MAX_DEPTH}")));
        }
        let Some(message) = self.descriptors.messages.get(index) else {
            return Err(DecodeError(format!("no protobuf message #{index}")));
        };
        match message.special {
            None => self.object(message, bytes, depth).map(Value::Object),
            Some(special) => self.special(special, message, bytes, depth),
        }
    }

    /// A message as an object of its fields, by their JSON names.
    fn object(
        &self,
        message: &Message,
        bytes: &[u8],
        depth: usize,
    ) -> Result<Map<String, Value>, DecodeError> {
        let mut object = Map::new();
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.next_field()? {
            // Fields newer than the descriptors are skipped, as protobuf intends.
            let Some(field) = message.field(number) else { continue };
            match field.cardinality {
                Cardinality::Singular => {
                    let decoded = self.value(message, field, value, depth)?;
                    if field.inline {
                        let Value::Object(inner) = decoded else {
                            return Err(field_error(message, field, "is not an object"));
                        };
                        object.extend(inner);
                    } else if decoded.is_null()
                        || (field.omit_zero && is_zero_scalar(field, &decoded))
                    {
                        object.remove(&field.json_name);
                    } else {
                        object.insert(field.json_name.clone(), decoded);
                    }
                }
                Cardinality::Repeated => {
                    let items = match (field.field_type, value) {
                        (FieldType::Scalar(scalar), WireValue::Bytes(packed))
                            if scalar != Scalar::String && scalar != Scalar::Bytes =>
                        {
                            unpack(scalar, packed)
                                .map_err(|error| field_error(message, field, &error.0))?
                        }
                        _ => vec![self.value(message, field, value, depth)?],
                    };
                    push_items(&mut object, &field.json_name, items);
                }
                Cardinality::Map => {
                    let entry = bytes_of(message, field, value)?;
                    let (key, value) = self.map_entry(message, field, entry, depth)?;
                    insert_entry(&mut object, &field.json_name, key, value);
                }
            }
        }
        Ok(object)
    }

    /// A `map<string, V>` entry: key 1, value 2; a missing one is its type's zero value.
    fn map_entry(
        &self,
        message: &Message,
        field: &Field,
        entry: &[u8],
        depth: usize,
    ) -> Result<(String, Value), DecodeError> {
        let (mut key, mut value) = (String::new(), None);
        let mut reader = Reader::new(entry);
        while let Some((number, wire)) = reader.next_field()? {
            match number {
                1 => key = string(wire, &field.json_name)?,
                2 => value = Some(self.value(message, field, wire, depth)?),
                _ => {}
            }
        }
        let value = match value {
            Some(value) => value,
            None => match field.field_type {
                FieldType::Scalar(scalar) => zero(scalar),
                FieldType::Message(index) => self.message(index, &[], depth + 1)?,
            },
        };
        Ok((key, value))
    }

    /// One value of a field: a scalar, or a nested message.
    fn value(
        &self,
        message: &Message,
        field: &Field,
        value: WireValue<'_>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        match field.field_type {
            FieldType::Scalar(scalar) => {
                scalar_value(scalar, value).map_err(|error| field_error(message, field, &error.0))
            }
            FieldType::Message(index) => {
                self.message(index, bytes_of(message, field, value)?, depth + 1)
            }
        }
    }

    /// The messages whose Go types marshal themselves.
    fn special(
        &self,
        special: Special,
        message: &Message,
        bytes: &[u8],
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let name = &message.full_name;
        match special {
            Special::Time | Special::MicroTime => {
                // gogo-protobuf writes a zero time as an empty message; Go's JSON says null.
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                let (mut seconds, mut nanos) = (0, 0);
                let mut reader = Reader::new(bytes);
                while let Some((number, value)) = reader.next_field()? {
                    match number {
                        1 => seconds = varint(value, name)? as i64,
                        2 => nanos = i64::from(varint(value, name)? as i32),
                        _ => {}
                    }
                }
                go_text::rfc3339(seconds, nanos, special == Special::MicroTime).map(Value::String)
            }
            Special::Duration => {
                let mut nanos = 0;
                let mut reader = Reader::new(bytes);
                while let Some((number, value)) = reader.next_field()? {
                    if number == 1 {
                        nanos = varint(value, name)? as i64;
                    }
                }
                Ok(Value::String(go_text::duration(nanos)))
            }
            Special::Quantity => {
                // A zero Quantity marshals as "0"; the server parses whatever text comes.
                let text = last_bytes(bytes, 1, name)?
                    .map_or_else(|| "0".into(), |b| String::from_utf8_lossy(b).into_owned());
                Ok(Value::String(text))
            }
            Special::IntOrString => {
                let (mut kind, mut int_value, mut string_value) = (0, 0, String::new());
                let mut reader = Reader::new(bytes);
                while let Some((number, value)) = reader.next_field()? {
                    match number {
                        1 => kind = varint(value, name)? as i64,
                        2 => int_value = varint(value, name)? as i32,
                        3 => string_value = string(value, name)?,
                        _ => {}
                    }
                }
                match kind {
                    0 => Ok(Value::from(int_value)),
                    1 => Ok(Value::String(string_value)),
                    other => Err(DecodeError(format!("IntOrString has invalid type {other}"))),
                }
            }
            Special::RawExtension => match last_bytes(bytes, 1, name)? {
                None | Some([]) => Ok(Value::Null),
                Some(raw) if raw.starts_with(MAGIC) => self.envelope(raw, depth),
                Some(raw) => Ok(serde_json::from_slice(raw)
                    .unwrap_or_else(|_| Value::String(go_text::base64(raw)))),
            },
            Special::RawJson => match last_bytes(bytes, 1, name)? {
                None | Some([]) => Ok(Value::Null),
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|error| DecodeError(format!("{name} holds invalid JSON: {error}"))),
            },
            Special::SchemaOrBool => {
                let mut object = self.object(message, bytes, depth)?;
                Ok(match object.remove("schema") {
                    Some(schema) => schema,
                    None => Value::Bool(object.get("allows") == Some(&Value::Bool(true))),
                })
            }
            Special::SchemaOrArray => {
                let mut object = self.object(message, bytes, depth)?;
                Ok(match object.remove("jSONSchemas") {
                    Some(schemas) => schemas,
                    None => object.remove("schema").unwrap_or(Value::Null),
                })
            }
            Special::SchemaOrStringArray => {
                let mut object = self.object(message, bytes, depth)?;
                Ok(match object.remove("property") {
                    Some(property) => property,
                    None => object.remove("schema").unwrap_or(Value::Null),
                })
            }
            Special::Slice => {
                let mut object = self.object(message, bytes, depth)?;
                Ok(object.remove("items").unwrap_or_else(|| Value::Array(Vec::new())))
            }
        }
    }
}

fn field_error(message: &Message, field: &Field, problem: &str) -> DecodeError {
    let type_name = message.full_name.rsplit('.').next().unwrap_or_default();
    DecodeError(format!(
        "protobuf field {type_name}.{} ({}): {problem}",
        field.json_name, field.number
    ))
}

fn bytes_of<'a>(
    message: &Message,
    field: &Field,
    value: WireValue<'a>,
) -> Result<&'a [u8], DecodeError> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        other => Err(field_error(
            message,
            field,
            &format!("is a message, not a {} value", other.wire_type()),
        )),
    }
}

fn bytes<'a>(value: WireValue<'a>, what: &str) -> Result<&'a [u8], DecodeError> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        other => Err(DecodeError(format!("{what} is length-delimited, not {}", other.wire_type()))),
    }
}

/// A string as Go's JSON writes it: invalid UTF-8 becomes U+FFFD.
fn string(value: WireValue<'_>, what: &str) -> Result<String, DecodeError> {
    bytes(value, what).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

fn varint(value: WireValue<'_>, what: &str) -> Result<u64, DecodeError> {
    match value {
        WireValue::Varint(value) => Ok(value),
        other => Err(DecodeError(format!("{what} field is a varint, not {}", other.wire_type()))),
    }
}

/// The last value of a length-delimited field, as protobuf's last-one-wins rule says.
fn last_bytes<'a>(
    bytes: &'a [u8],
    wanted: u32,
    what: &str,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let mut found = None;
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        if number == wanted {
            found = Some(self::bytes(value, what)?);
        }
    }
    Ok(found)
}

/// A scalar's JSON: integers as numbers (Go writes int64 as a number too), bytes as base64.
fn scalar_value(scalar: Scalar, value: WireValue<'_>) -> Result<Value, DecodeError> {
    // Integer fields are proto's two's-complement varints: an int32 is the low 32 bits.
    Ok(match (scalar, value) {
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Scalar::Double, WireValue::Fixed64(bits)) => finite(f64::from_bits(bits))?,
        (Scalar::Float, WireValue::Fixed32(bits)) => finite(f64::from(f32::from_bits(bits)))?,
        (Scalar::String, WireValue::Bytes(bytes)) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        (Scalar::Bytes, WireValue::Bytes(bytes)) => Value::String(go_text::base64(bytes)),
        (scalar, other) => {
            return Err(DecodeError(format!(
                "a {scalar:?} does not come as a {} value",
                other.wire_type()
            )));
        }
    })
}

/// Go's JSON has no NaN or infinity: encoding one fails, so decoding one does too.
fn finite(number: f64) -> Result<Value, DecodeError> {
    Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| DecodeError(format!("{number} is not a JSON number")))
}

/// Elements of a packed repeated scalar field.
fn unpack(scalar: Scalar, packed: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut items = Vec::new();
    let mut reader = Reader::new(packed);
    while !reader.is_empty() {
        let value = match scalar {
            Scalar::Double => WireValue::Fixed64(reader.fixed64()?),
            Scalar::Float => WireValue::Fixed32(reader.fixed32()?),
            _ => WireValue::Varint(reader.varint()?),
        };
        items.push(scalar_value(scalar, value)?);
    }
    Ok(items)
}

fn zero(scalar: Scalar) -> Value {
    match scalar {
        Scalar::Bool => Value::Bool(false),
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Double | Scalar::Float => Value::from(0.0),
        Scalar::Int32 | Scalar::Int64 | Scalar::Uint32 | Scalar::Uint64 => Value::from(0),
    }
}

/// Whether a scalar field holds its zero value, which `omitempty` leaves out. Messages are
/// never left out: `omitempty` does not apply to Go structs (an `IntOrString` of 0 stays).
fn is_zero_scalar(field: &Field, value: &Value) -> bool {
    matches!(field.field_type, FieldType::Scalar(_))
        && match value {
            Value::Bool(b) => !b,
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            _ => false,
        }
}

/// Appends to a repeated field's array.
fn push_items(object: &mut Map<String, Value>, name: &str, values: Vec<Value>) {
    match object.get_mut(name) {
        Some(Value::Array(items)) => items.extend(values),
        _ => {
            object.insert(name.to_owned(), Value::Array(values));
        }
    }
}

/// Adds a map field's entry; a repeated key keeps the last value, as in Go.
fn insert_entry(object: &mut Map<String, Value>, name: &str, key: String, value: Value) {
    match object.get_mut(name) {
        Some(Value::Object(map)) => {
            map.insert(key, value);
        }
        _ => {
            object.insert(name.to_owned(), Value::Object(Map::from_iter([(key, value)])));
        }
    }
}
