//! `cargo xtask protobuf [--check]`: generates capstan-api's protobuf descriptors
//! (`crates/capstan-api/protobuf/descriptors.json`) from the vendored `.proto` files beside
//! it, the way `cargo xtask openapi` generates the OpenAPI schemas: the output is committed
//! and embedded, and `--check` (and this module's test) fails when it is stale.
//!
//! `cargo xtask protobuf vendor DIR` refreshes the vendored files from upstream checkouts:
//! DIR holds `api/`, `apimachinery/`, `apiextensions-apiserver/` and `kube-aggregator/`, each
//! the Kubernetes module at [`UPSTREAM_TAG`] (`git archive v0.33.9 | tar -x -C DIR/api`).
//! Vendoring keeps each package's `generated.proto` without its comments, and adds what the
//! wire format does not say but the JSON form needs, read from the package's Go types: after
//! each field, `// go: type=<Go type> json=<JSON tag>` (the JSON name, `,inline` for embedded
//! structs, `omitempty`, and whether the field is a pointer); after a message whose Go type
//! is not a struct (`type ExtraValue []string`), `// go: type=<that type>`; and the package's
//! API group as `// +groupName=<group>`.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The vendored `.proto` files, laid out by import path (`k8s.io/api/core/v1/generated.proto`).
const VENDOR_DIR: &str = "crates/capstan-api/protobuf";

/// The generated file, relative to the workspace root.
const OUTPUT: &str = "crates/capstan-api/protobuf/descriptors.json";

/// The module tag of the Kubernetes release the vendored files come from (1.33).
const UPSTREAM_TAG: &str = "v0.33.9";

/// The Go package of every group-version capstan-api's registry serves, with its API group;
/// vendoring also takes the packages they import. `meta.k8s.io` is the group of the options
/// kinds (`DeleteOptions`) every group-version also serves.
const PACKAGES: &[(&str, &str)] = &[
    ("", "k8s.io/api/core/v1"),
    ("admissionregistration.k8s.io", "k8s.io/api/admissionregistration/v1"),
    ("apiextensions.k8s.io", "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"),
    ("apiregistration.k8s.io", "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"),
    ("apps", "k8s.io/api/apps/v1"),
    ("authentication.k8s.io", "k8s.io/api/authentication/v1"),
    ("authorization.k8s.io", "k8s.io/api/authorization/v1"),
    ("autoscaling", "k8s.io/api/autoscaling/v1"),
    ("autoscaling", "k8s.io/api/autoscaling/v2"),
    ("batch", "k8s.io/api/batch/v1"),
    ("certificates.k8s.io", "k8s.io/api/certificates/v1"),
    ("coordination.k8s.io", "k8s.io/api/coordination/v1"),
    ("discovery.k8s.io", "k8s.io/api/discovery/v1"),
    ("events.k8s.io", "k8s.io/api/events/v1"),
    ("flowcontrol.apiserver.k8s.io", "k8s.io/api/flowcontrol/v1"),
    ("meta.k8s.io", "k8s.io/apimachinery/pkg/apis/meta/v1"),
    ("networking.k8s.io", "k8s.io/api/networking/v1"),
    ("node.k8s.io", "k8s.io/api/node/v1"),
    ("policy", "k8s.io/api/policy/v1"),
    ("rbac.authorization.k8s.io", "k8s.io/api/rbac/v1"),
    ("scheduling.k8s.io", "k8s.io/api/scheduling/v1"),
    ("storage.k8s.io", "k8s.io/api/storage/v1"),
];

/// The proto scalar types the Kubernetes messages use, and the wire decoder understands.
const SCALARS: &[&str] =
    &["bool", "bytes", "double", "float", "int32", "int64", "string", "uint32", "uint64"];

/// `cargo xtask protobuf [--check]` and `cargo xtask protobuf vendor DIR`.
pub(crate) fn run(flags: &[&str]) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let check_only = match flags {
        [] => false,
        ["--check"] => true,
        ["vendor", upstream] => {
            vendor(Path::new(upstream), &root.join(VENDOR_DIR))?;
            false
        }
        _ => bail!("usage: cargo xtask protobuf [--check | vendor DIR]"),
    };
    let generated = generate(&root.join(VENDOR_DIR))?;
    let path = root.join(OUTPUT);
    if check_only {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if committed != generated {
            bail!("{OUTPUT} is stale: run `cargo xtask protobuf` and commit the result");
        }
        eprintln!("{OUTPUT} is up to date");
        return Ok(());
    }
    std::fs::write(&path, &generated)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {OUTPUT} ({} bytes)", generated.len());
    Ok(())
}

/// A parsed `.proto` file: the subset go-to-protobuf writes (proto2; package, imports,
/// `option go_package`, messages with optional, repeated and map fields), plus the vendored
/// annotations.
#[derive(Debug, Default)]
struct ProtoFile {
    package: String,
    go_package: String,
    imports: Vec<String>,
    /// From `// +groupName=`: the API group whose kinds this package holds.
    group: Option<String>,
    messages: Vec<Message>,
}

#[derive(Debug)]
struct Message {
    /// Dotted within the package for nested messages (`Outer.Inner`).
    name: String,
    fields: Vec<Field>,
    /// The message's own `// go:` annotation (its Go type, when it is not a struct).
    go_type: Option<String>,
}

#[derive(Debug)]
struct Field {
    label: Label,
    /// As written: a scalar, a name relative to the package, or `.fully.qualified`.
    type_name: String,
    name: String,
    number: u32,
    /// The `// go:` annotation's `type=`, when vendoring found the Go field.
    go_type: Option<String>,
    /// The `// go:` annotation's `json=`: the Go field's JSON tag.
    json_tag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Repeated,
    /// `map<string, V>`: `type_name` is V.
    Map,
}

/// Parses one `.proto` file of the go-to-protobuf subset, one statement a line; anything
/// else is an error, so that an upstream change in shape is noticed rather than misread.
fn parse_proto(text: &str) -> anyhow::Result<ProtoFile> {
    let mut file = ProtoFile::default();
    // Open messages, innermost last.
    let mut open: Vec<Message> = Vec::new();
    let mut in_block_comment = false;
    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let mut line = raw_line.to_owned();
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_owned();
                    in_block_comment = false;
                }
                None => continue,
            }
        }
        // A `/*` inside a line comment (`// "/healthz/*" matches ...`) opens nothing.
        let line_comment = line.find("//").unwrap_or(usize::MAX);
        if let Some(start) = line.find("/*").filter(|&start| start < line_comment) {
            match line[start..].find("*/") {
                Some(end) => line.replace_range(start..start + end + 2, ""),
                None => {
                    line.truncate(start);
                    in_block_comment = true;
                }
            }
        }
        let (code, comment) = match line.find("//") {
            Some(at) => (line[..at].trim(), Some(line[at + 2..].trim())),
            None => (line.trim(), None),
        };
        let annotation = comment.and_then(|c| c.strip_prefix("go:")).map(str::trim);
        if code.is_empty() {
            if let Some(group) = comment.and_then(|c| c.strip_prefix("+groupName=")) {
                file.group = Some(group.trim().to_owned());
            }
            continue;
        }
        let context = || format!("line {line_number}: {code:?}");
        let statement = code.strip_suffix(';');
        if let Some(rest) = code.strip_prefix("message ") {
            let name = rest.strip_suffix('{').map(str::trim).with_context(context)?;
            let name = match open.last() {
                Some(outer) => format!("{}.{name}", outer.name),
                None => name.to_owned(),
            };
            let go_type = annotation.and_then(|a| a.strip_prefix("type=")).map(str::to_owned);
            open.push(Message { name, fields: Vec::new(), go_type });
        } else if code == "}" {
            let message = open.pop().with_context(context)?;
            file.messages.push(message);
        } else if let Some(statement) = statement {
            if let Some(package) = statement.strip_prefix("package ") {
                file.package = package.trim().to_owned();
            } else if let Some(import) = statement.strip_prefix("import ") {
                file.imports.push(unquote(import).with_context(context)?);
            } else if let Some(option) = statement.strip_prefix("option go_package =") {
                file.go_package = unquote(option).with_context(context)?;
            } else if statement.starts_with("syntax ") {
                if !statement.contains("\"proto2\"") {
                    bail!("{}: only proto2 is supported", context());
                }
            } else {
                let message = open.last_mut().with_context(context)?;
                let mut field = parse_field(statement).with_context(context)?;
                if let Some(annotation) = annotation {
                    for word in annotation.split_whitespace() {
                        if let Some(go_type) = word.strip_prefix("type=") {
                            field.go_type = Some(go_type.to_owned());
                        } else if let Some(tag) = word.strip_prefix("json=") {
                            field.json_tag = Some(tag.to_owned());
                        }
                    }
                }
                message.fields.push(field);
            }
        } else {
            bail!("{}: not a statement of the supported subset", context());
        }
    }
    if !open.is_empty() || in_block_comment {
        bail!("unexpected end of file inside a message or comment");
    }
    if file.package.is_empty() {
        bail!("no package statement");
    }
    Ok(file)
}

/// `optional T name = N`, `repeated T name = N` or `map<K, V> name = N`.
fn parse_field(statement: &str) -> anyhow::Result<Field> {
    let (declaration, number) = statement.split_once('=').context("no field number")?;
    let number: u32 = number.trim().parse().context("bad field number")?;
    let (label, type_name, name) = if let Some(rest) = declaration.trim().strip_prefix("map<") {
        let (types, name) = rest.split_once('>').context("unterminated map type")?;
        let (key, value) = types.split_once(',').context("map type without a value type")?;
        if key.trim() != "string" {
            bail!("map keys other than string are not supported");
        }
        (Label::Map, value.trim(), name.trim())
    } else {
        let words: Vec<&str> = declaration.split_whitespace().collect();
        match words.as_slice() {
            ["optional", type_name, name] => (Label::Optional, *type_name, *name),
            ["repeated", type_name, name] => (Label::Repeated, *type_name, *name),
            _ => bail!("not a field declaration"),
        }
    };
    Ok(Field {
        label,
        type_name: type_name.to_owned(),
        name: name.to_owned(),
        number,
        go_type: None,
        json_tag: None,
    })
}

fn unquote(text: &str) -> Option<String> {
    text.trim().strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
}

/// Reads every vendored file, resolves type names and writes the descriptor file: one
/// message a line, keys sorted, so that an upstream change is a readable diff.
fn generate(vendor_dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_protos(vendor_dir, &mut files)?;
    files.sort();
    let mut parsed = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file = parse_proto(&text).with_context(|| format!("in {}", path.display()))?;
        parsed.push(file);
    }
    if parsed.is_empty() {
        bail!("no .proto files under {}", vendor_dir.display());
    }
    let known: BTreeSet<String> = parsed
        .iter()
        .flat_map(|file| file.messages.iter().map(|m| format!("{}.{}", file.package, m.name)))
        .collect();
    let mut group_versions = BTreeMap::new();
    let mut messages = BTreeMap::new();
    let mut slices = BTreeSet::new();
    for file in &parsed {
        if let Some(group) = &file.group {
            let version = file.package.rsplit('.').next().unwrap_or_default();
            let api_version =
                if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
            let package = Value::String(file.package.clone());
            if group_versions.insert(api_version.clone(), package).is_some() {
                bail!("two packages serve {api_version}");
            }
        }
        for message in &file.messages {
            let full_name = format!("{}.{}", file.package, message.name);
            if let Some(go_type) = &message.go_type {
                if !go_type.starts_with("[]") {
                    bail!("{full_name}: Go type {go_type} is neither a struct nor a slice");
                }
                slices.insert(full_name.clone());
            }
            let mut fields = Vec::new();
            for field in &message.fields {
                let mut type_name = resolve(&field.type_name, &file.package, &message.name, &known)
                    .with_context(|| format!("{full_name}.{}", field.name))?;
                // A message of the same package is named without it, to keep the file small.
                if let Some(local) = type_name.strip_prefix(&format!("{}.", file.package)) {
                    type_name = local.to_owned();
                }
                fields.push(descriptor_field(field, type_name));
            }
            messages.insert(full_name, Value::Array(fields));
        }
    }
    let mut text = String::from("{\n\"upstream\": ");
    text.push_str(&serde_json::to_string(&format!(
        "k8s.io modules {UPSTREAM_TAG} (Kubernetes 1.33)"
    ))?);
    text.push_str(",\n\"groupVersions\": {\n");
    push_entries(&mut text, &group_versions)?;
    text.push_str("},\n\"messages\": {\n");
    push_entries(&mut text, &messages)?;
    text.push_str("},\n\"slices\": ");
    text.push_str(&serde_json::to_string(&slices)?);
    text.push_str("\n}\n");
    Ok(text)
}

/// `"key": value` lines, comma-separated.
fn push_entries(text: &mut String, entries: &BTreeMap<String, Value>) -> anyhow::Result<()> {
    let mut first = true;
    for (key, value) in entries {
        if !first {
            text.push_str(",\n");
        }
        first = false;
        text.push_str(&serde_json::to_string(key)?);
        text.push_str(": ");
        text.push_str(&serde_json::to_string(value)?);
    }
    text.push('\n');
    Ok(())
}

/// `[number, "jsonName", "type", "flags"]`: the type is a scalar's name, a message of the same
/// package by its name in the package, or another's by its full name. Flags `r` repeated, `m` map (the type is the
/// value's), `i` inlined into the parent (an embedded Go struct), `o` omitted when zero (a
/// non-pointer Go field tagged `omitempty`).
fn descriptor_field(field: &Field, type_name: String) -> Value {
    let mut flags = String::new();
    match field.label {
        Label::Optional => {}
        Label::Repeated => flags.push('r'),
        Label::Map => flags.push('m'),
    }
    // Without a JSON tag (types with their own JSON form), the proto name stands in.
    let mut json_name = field.name.clone();
    if let Some(tag) = &field.json_tag {
        let mut options = tag.split(',');
        let name = options.next().unwrap_or_default();
        let options: Vec<&str> = options.collect();
        if options.contains(&"inline") {
            flags.push('i');
        } else if !name.is_empty() {
            json_name = name.to_owned();
        }
        let pointer = field.go_type.as_deref().is_some_and(|t| t.starts_with('*'));
        if options.contains(&"omitempty") && !pointer {
            flags.push('o');
        }
    }
    json!([field.number, json_name, type_name, flags])
}

/// A field's type, fully qualified without the leading dot, or a scalar's name.
fn resolve(
    type_name: &str,
    package: &str,
    scope: &str,
    known: &BTreeSet<String>,
) -> anyhow::Result<String> {
    if SCALARS.contains(&type_name) {
        return Ok(type_name.to_owned());
    }
    if let Some(qualified) = type_name.strip_prefix('.') {
        return if known.contains(qualified) {
            Ok(qualified.to_owned())
        } else {
            bail!("unknown message type {type_name}")
        };
    }
    // Innermost scope first, as protoc resolves relative names.
    let mut scope: Vec<&str> = scope.split('.').collect();
    loop {
        let mut candidate = package.to_owned();
        for part in &scope {
            candidate.push('.');
            candidate.push_str(part);
        }
        candidate.push('.');
        candidate.push_str(type_name);
        if known.contains(&candidate) {
            return Ok(candidate);
        }
        if scope.pop().is_none() {
            bail!("unknown message type {type_name}");
        }
    }
}

fn collect_protos(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// Copies every package in [`PACKAGES`], and what they import, from upstream checkouts
/// into the vendor directory, comments dropped and Go facts added.
fn vendor(upstream: &Path, vendor_dir: &Path) -> anyhow::Result<()> {
    let groups: BTreeMap<&str, &str> = PACKAGES.iter().map(|(g, p)| (*p, *g)).collect();
    let mut pending: Vec<String> = PACKAGES.iter().map(|(_, p)| (*p).to_owned()).collect();
    let mut done = BTreeSet::new();
    let mut unannotated = 0;
    while let Some(go_package) = pending.pop() {
        if !done.insert(go_package.clone()) {
            continue;
        }
        let relative = go_package.strip_prefix("k8s.io/").context("not a k8s.io package")?;
        let source_dir = upstream.join(relative);
        let proto_path = source_dir.join("generated.proto");
        let text = std::fs::read_to_string(&proto_path)
            .with_context(|| format!("cannot read {}", proto_path.display()))?;
        let file = parse_proto(&text).with_context(|| format!("in {}", proto_path.display()))?;
        if file.go_package != go_package {
            bail!("{} declares go_package {}", proto_path.display(), file.go_package);
        }
        let go = read_go_types(&source_dir)?;
        let (vendored, missing) = render_vendored(&file, &go, groups.get(go_package.as_str()))
            .with_context(|| format!("in {}", proto_path.display()))?;
        unannotated += missing;
        let target = vendor_dir.join(&go_package).join("generated.proto");
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&target, vendored)
            .with_context(|| format!("cannot write {}", target.display()))?;
        for import in &file.imports {
            let package = import.strip_suffix("/generated.proto").context("unexpected import")?;
            pending.push(package.to_owned());
        }
    }
    eprintln!(
        "vendored {} packages; {unannotated} fields have no Go declaration (their messages \
         have their own JSON form)",
        done.len()
    );
    Ok(())
}

/// A package's Go types, as far as the JSON form needs them.
#[derive(Debug, Default)]
struct GoTypes {
    /// Struct name → (protobuf field number → (Go type, JSON tag)).
    structs: BTreeMap<String, BTreeMap<u32, (String, Option<String>)>>,
    /// Named slice types: name → underlying type (`ExtraValue` → `[]string`).
    named: BTreeMap<String, String>,
}

/// Reads the struct declarations of a package's hand-written Go files. The Kubernetes API
/// types declare one field a line, `Name Type \`json:"..." protobuf:"..."\``, which is all
/// this reader understands.
fn read_go_types(dir: &Path) -> anyhow::Result<GoTypes> {
    let mut types = GoTypes::default();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".go")
                && !name.ends_with("_test.go")
                && !name.starts_with("zz_generated")
                && name != "generated.pb.go"
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(name) =
                line.strip_prefix("type ").and_then(|rest| rest.strip_suffix(" struct {"))
            {
                current = Some(name.trim().to_owned());
                continue;
            }
            if line == "}" {
                current = None;
                continue;
            }
            let Some(struct_name) = &current else {
                if let Some(rest) = line.strip_prefix("type ") {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    // Only named slices are messages of their own (`ExtraValue`); named maps
                    // are inlined as map fields, other named types are aliases.
                    if let [name, underlying] = words.as_slice()
                        && underlying.starts_with("[]")
                    {
                        types.named.insert((*name).to_owned(), (*underlying).to_owned());
                    }
                }
                continue;
            };
            let trimmed = line.trim();
            if trimmed.starts_with("//") {
                continue;
            }
            let Some((declaration, tag)) = trimmed.split_once('`') else { continue };
            let Some(protobuf) = tag_value(tag, "protobuf") else { continue };
            let Some(number) = protobuf.split(',').nth(1).and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let words: Vec<&str> = declaration.split_whitespace().collect();
            let go_type = match words.as_slice() {
                [embedded] => *embedded,
                [_name, go_type] => *go_type,
                _ => continue,
            };
            types
                .structs
                .entry(struct_name.clone())
                .or_default()
                .insert(number, (go_type.to_owned(), tag_value(tag, "json")));
        }
    }
    Ok(types)
}

/// The value of `key:"..."` in a Go struct tag.
fn tag_value(tag: &str, key: &str) -> Option<String> {
    let start = tag.find(&format!("{key}:\""))? + key.len() + 2;
    let end = tag[start..].find('"')?;
    Some(tag[start..start + end].to_owned())
}

/// The vendored text of one file, and how many of its fields have no Go declaration.
fn render_vendored(
    file: &ProtoFile,
    go: &GoTypes,
    group: Option<&&str>,
) -> anyhow::Result<(String, usize)> {
    let mut out = format!(
        "// Vendored by `cargo xtask protobuf vendor` from {}/generated.proto at {UPSTREAM_TAG}:\n\
         // comments dropped; `go:` notes the Go field (or non-struct type) behind each.\n",
        file.go_package
    );
    if let Some(group) = group {
        out.push_str(&format!("// +groupName={group}\n"));
    }
    out.push_str(&format!("syntax = \"proto2\";\n\npackage {};\n\n", file.package));
    for import in &file.imports {
        out.push_str(&format!("import \"{import}\";\n"));
    }
    out.push_str(&format!("\noption go_package = \"{}\";\n", file.go_package));
    let mut missing = 0;
    for message in &file.messages {
        // Upstream files hold no nested messages; writing one back would need the nesting
        // the parser flattened, so vendoring refuses it rather than write it wrong.
        if message.name.contains('.') {
            bail!("nested message {} is not supported by vendoring", message.name);
        }
        out.push_str(&format!("\nmessage {} {{", message.name));
        match go.named.get(&message.name) {
            Some(underlying) => out.push_str(&format!(" // go: type={underlying}\n")),
            None => out.push('\n'),
        }
        let go_fields = go.structs.get(&message.name);
        for field in &message.fields {
            let label = match field.label {
                Label::Optional => format!("optional {}", field.type_name),
                Label::Repeated => format!("repeated {}", field.type_name),
                Label::Map => format!("map<string, {}>", field.type_name),
            };
            out.push_str(&format!("  {label} {} = {};", field.name, field.number));
            match go_fields.and_then(|fields| fields.get(&field.number)) {
                Some((go_type, json_tag)) => {
                    out.push_str(&format!(" // go: type={go_type}"));
                    if let Some(tag) = json_tag {
                        out.push_str(&format!(" json={tag}"));
                    }
                }
                None if go.named.contains_key(&message.name) => {}
                None => missing += 1,
            }
            out.push('\n');
        }
        out.push_str("}\n");
    }
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_descriptors_are_fresh() {
        let root = crate::workspace_root();
        let generated = generate(&root.join(VENDOR_DIR)).unwrap();
        let committed = std::fs::read_to_string(root.join(OUTPUT)).unwrap();
        assert!(
            committed == generated,
            "{OUTPUT} is stale: run `cargo xtask protobuf` and commit the result"
        );
    }

    #[test]
    fn the_parser_reads_the_go_to_protobuf_subset() {
        let text = "/*\nlicense http://x\n*/\n// +groupName=apps\nsyntax = \"proto2\";\n\
            package a.b.v1;\nimport \"k8s.io/x/generated.proto\";\n\
            option go_package = \"k8s.io/a/b/v1\";\n\
            // A comment.\nmessage Outer { // go: type=[]string\n\
              optional int32 replicas = 1; // go: type=*int32 json=replicas,omitempty\n\
              map<string, string> labels = 2;\n\
              message Inner {\n    repeated Outer all = 3;\n  }\n\
              optional Inner inner = 4;\n}\n";
        let file = parse_proto(text).unwrap();
        assert_eq!(file.package, "a.b.v1");
        assert_eq!(file.go_package, "k8s.io/a/b/v1");
        assert_eq!(file.group.as_deref(), Some("apps"));
        assert_eq!(file.imports, ["k8s.io/x/generated.proto"]);
        let names: Vec<&str> = file.messages.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Outer.Inner", "Outer"]);
        let outer = &file.messages[1];
        assert_eq!(outer.go_type.as_deref(), Some("[]string"));
        assert_eq!(outer.fields[0].json_tag.as_deref(), Some("replicas,omitempty"));
        assert_eq!(outer.fields[1].label, Label::Map);
        let known: BTreeSet<String> =
            ["a.b.v1.Outer", "a.b.v1.Outer.Inner"].map(String::from).into();
        assert_eq!(resolve("Inner", "a.b.v1", "Outer", &known).unwrap(), "a.b.v1.Outer.Inner");
        assert_eq!(resolve("Outer", "a.b.v1", "Outer.Inner", &known).unwrap(), "a.b.v1.Outer");
        assert!(resolve("Missing", "a.b.v1", "Outer", &known).is_err());
        assert!(parse_proto("package p;\nmessage M {\n  oneof x {\n}\n}\n").is_err());
        assert!(parse_proto("package p;\nmessage M {\n").is_err());
    }

    #[test]
    fn fields_carry_their_json_facts() {
        let field = |go_type: &str, tag: &str| Field {
            label: Label::Optional,
            type_name: "int32".into(),
            name: "ref".into(),
            number: 3,
            go_type: Some(go_type.into()),
            json_tag: Some(tag.into()),
        };
        let flags = |f: &Field| descriptor_field(f, "int32".into());
        assert_eq!(
            flags(&field("*int32", "replicas,omitempty")),
            json!([3, "replicas", "int32", ""])
        );
        assert_eq!(flags(&field("int32", "$ref,omitempty")), json!([3, "$ref", "int32", "o"]));
        assert_eq!(flags(&field("VolumeSource", ",inline")), json!([3, "ref", "int32", "i"]));
    }
}
