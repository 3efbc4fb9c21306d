//! Property tests of both patch engines over generated documents and patches: a patch
//! is untrusted input, so no document and patch may make either engine panic, and the
//! engines must agree with simpler definitions where those apply.

use super::{json_patch, strategic, strategic_merge_patch};
use crate::merge_patch;
use crate::registry::builtin;
use serde_json::{Map, Value, json};

/// Cases per property; each case is a fresh document and patch.
const CASES: u64 = 2000;

/// SplitMix64: small, seedable, and good enough to spread test cases.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Keys that hit real schema fields of a Pod as well as unknown ones, and keys that need
/// escaping in a JSON pointer.
const KEYS: &[&str] = &[
    "a",
    "b",
    "c",
    "metadata",
    "labels",
    "finalizers",
    "spec",
    "containers",
    "name",
    "image",
    "env",
    "ports",
    "containerPort",
    "volumes",
    "x/y",
    "m~n",
];

/// What a patch may hold besides plain keys.
const DIRECTIVE_KEYS: &[&str] = &[
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "$setElementOrder",
];

#[derive(Debug, Clone, Copy)]
struct Shape {
    lists: bool,
    nulls: bool,
    directives: bool,
}

fn scalar(rng: &mut Rng, shape: Shape) -> Value {
    match rng.below(6) {
        0 if shape.nulls => Value::Null,
        0 | 1 => json!(rng.below(3)),
        2 => json!(rng.chance(50)),
        3 if shape.directives => json!(rng.pick(&["delete", "replace", "merge"])),
        _ => json!(rng.pick(&["x", "y", "z", "name"])),
    }
}

fn value(rng: &mut Rng, depth: usize, shape: Shape) -> Value {
    if depth == 0 {
        return scalar(rng, shape);
    }
    match rng.below(10) {
        0..=3 => object(rng, depth - 1, shape),
        4..=5 if shape.lists => {
            let len = rng.below(4);
            let items = (0..len)
                .map(|_| {
                    if rng.chance(60) { object(rng, depth - 1, shape) } else { scalar(rng, shape) }
                })
                .collect();
            Value::Array(items)
        }
        _ => scalar(rng, shape),
    }
}

fn object(rng: &mut Rng, depth: usize, shape: Shape) -> Value {
    let mut fields = Map::new();
    for _ in 0..rng.below(5) {
        let key = if shape.directives && rng.chance(15) {
            rng.pick(DIRECTIVE_KEYS)
        } else {
            rng.pick(KEYS)
        };
        fields.insert(key.to_owned(), value(rng, depth, shape));
    }
    Value::Object(fields)
}

fn document(rng: &mut Rng) -> Value {
    object(rng, 4, Shape { lists: true, nulls: false, directives: false })
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A pointer to somewhere new in `doc` (a key it lacks, or an index up to an array's
/// length), for an `add` that a `remove` of the same pointer undoes.
fn fresh_pointer(rng: &mut Rng, doc: &Value) -> String {
    let mut pointer = String::new();
    let mut current = doc;
    loop {
        let descend = rng.chance(60);
        match current {
            Value::Object(fields) if descend && !fields.is_empty() => {
                let (key, next) = fields.iter().nth(rng.below(fields.len())).unwrap();
                if next.is_object() || next.is_array() {
                    pointer += &format!("/{}", escape(key));
                    current = next;
                    continue;
                }
            }
            Value::Array(items) if descend && !items.is_empty() => {
                let index = rng.below(items.len());
                if items[index].is_object() || items[index].is_array() {
                    pointer += &format!("/{index}");
                    current = &items[index];
                    continue;
                }
            }
            _ => {}
        }
        return match current {
            Value::Array(items) => format!("{pointer}/{}", rng.below(items.len() + 1)),
            Value::Object(fields) => {
                let key = (0..)
                    .map(|n| format!("new~/{n}"))
                    .find(|key| !fields.contains_key(key))
                    .unwrap();
                format!("{pointer}/{}", escape(&key))
            }
            _ => unreachable!("the walk stays on containers"),
        };
    }
}

#[test]
fn json_patch_add_then_remove_restores_the_document() {
    let mut rng = Rng(1);
    for _ in 0..CASES {
        let doc = document(&mut rng);
        let path = fresh_pointer(&mut rng, &doc);
        let added = value(&mut rng, 2, Shape { lists: true, nulls: true, directives: false });
        let patch = json!([{"op": "add", "path": path, "value": added}, {"op": "test", "path": path, "value": added}]);
        let patched = json_patch(&doc, &patch).unwrap();
        let restored = json_patch(&patched, &json!([{"op": "remove", "path": path}])).unwrap();
        assert_eq!(restored, doc, "{path}");
        // `move` there and back again is the identity too.
        let moved = json!([{"op": "move", "from": path, "path": "/moved~1away"}, {"op": "move", "from": "/moved~1away", "path": path}]);
        assert_eq!(json_patch(&patched, &moved).unwrap(), patched, "{path}");
    }
}

#[test]
fn smp_without_lists_or_directives_is_a_json_merge_patch() {
    let mut rng = Rng(2);
    let configmaps = builtin().iter().find(|resource| resource.kind == "ConfigMap").unwrap();
    for _ in 0..CASES {
        let doc = document(&mut rng);
        let patch = object(&mut rng, 3, Shape { lists: false, nulls: true, directives: false });
        let mut merged = doc.clone();
        merge_patch(&mut merged, &patch);
        assert_eq!(strategic::apply(None, &doc, &patch).unwrap(), merged, "{doc} + {patch}");
        assert_eq!(
            strategic_merge_patch(configmaps, &doc, &patch).unwrap(),
            merged,
            "{doc} + {patch}"
        );
    }
}

#[test]
fn arbitrary_patches_never_panic_and_never_leave_directives() {
    let mut rng = Rng(3);
    let kinds: Vec<_> = ["Pod", "Deployment", "Service", "ConfigMap"]
        .iter()
        .filter_map(|kind| builtin().iter().find(|resource| resource.kind == *kind))
        .collect();
    let shape = Shape { lists: true, nulls: true, directives: true };
    for _ in 0..CASES {
        let doc = document(&mut rng);
        let patch =
            if rng.chance(95) { object(&mut rng, 4, shape) } else { value(&mut rng, 2, shape) };
        if let Ok(patched) = strategic_merge_patch(rng.pick(&kinds), &doc, &patch) {
            assert!(!has_directive(&patched), "{doc} + {patch} = {patched}");
        }

        let operations = (0..rng.below(4))
            .map(|_| {
                let mut operation = Map::new();
                let op = rng.pick(&["add", "remove", "replace", "move", "copy", "test", "other"]);
                operation.insert("op".into(), json!(op));
                for field in ["path", "from"] {
                    if rng.chance(90) {
                        let pointer = if rng.chance(70) {
                            fresh_pointer(&mut rng, &doc)
                        } else {
                            garbage_pointer(&mut rng)
                        };
                        operation.insert(field.into(), json!(pointer));
                    }
                }
                if rng.chance(80) {
                    operation.insert("value".into(), value(&mut rng, 2, shape));
                }
                Value::Object(operation)
            })
            .collect();
        let _ = json_patch(&doc, &Value::Array(operations));
    }
}

fn garbage_pointer(rng: &mut Rng) -> String {
    let tokens =
        ["", "a", "0", "-", "-1", "01", "99", "~", "~2", "x~1y", "m~0n", "spec", "containers"];
    let mut pointer = String::new();
    for _ in 0..rng.below(4) {
        pointer.push('/');
        pointer.push_str(rng.pick(&tokens));
    }
    if rng.chance(10) { pointer.trim_start_matches('/').to_owned() } else { pointer }
}

fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.iter().any(|(key, value)| {
            key == "$patch"
                || key == "$retainKeys"
                || key.starts_with("$setElementOrder")
                || key.starts_with("$deleteFromPrimitiveList")
                || has_directive(value)
        }),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}
