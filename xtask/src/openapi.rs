//! `cargo xtask openapi [--check]`: generates capstan-api's OpenAPI schemas
//! (`crates/capstan-api/openapi/v1.33.json`) from k8s-openapi's types, the way rust-analyzer
//! generates its sourcegen files: the output is committed, so capstan-api embeds it without
//! ever compiling schemars or k8s-openapi. `--check` fails if the committed file is stale.
//!
//! k8s-openapi's schemas carry the types and their descriptions but not the `x-kubernetes-*`
//! extensions; this generator adds them: each kind's group-version-kind, a `<Kind>List`
//! schema for every listable kind, the list, map and patch extensions from [`EXTENSIONS`],
//! and upstream's shapes for the scalar unions (IntOrString, Quantity) and for free-form JSON.

use anyhow::{Context, bail};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::{ListableResource, Resource};
use serde_json::{Map, Value, json};

/// `metav1.Status`, which needs the same correction as the kinds (see `unrequire_metadata`).
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// Where the generated file lives, relative to the workspace root.
const OUTPUT: &str = "crates/capstan-api/openapi/v1.33.json";

/// `cargo xtask openapi`: writes the file; with `--check`, only compares.
pub(crate) fn run(flags: &[&str]) -> anyhow::Result<()> {
    let check_only = match flags {
        [] => false,
        ["--check"] => true,
        _ => bail!("usage: cargo xtask openapi [--check]"),
    };
    let generated = generate()?;
    let path = crate::workspace_root().join(OUTPUT);
    if check_only {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if committed != generated {
            bail!("{OUTPUT} is stale: run `cargo xtask openapi` and commit the result");
        }
        eprintln!("{OUTPUT} is up to date");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &generated)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {OUTPUT} ({} bytes)", generated.len());
    Ok(())
}

/// The whole file: `{"schemas": {name: schema}}`, keys sorted, pretty-printed so that a
/// change to one type is a readable diff.
fn generate() -> anyhow::Result<String> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    roots(&mut generator, &mut kinds);
    let mut schemas = generator.take_definitions(true);
    for kind in &kinds {
        add_kind(&mut schemas, kind)?;
    }
    if let Some(Value::Object(status)) = schemas.get_mut(STATUS) {
        unrequire_metadata(status);
    }
    reshape_special_types(&mut schemas)?;
    apply_extensions(&mut schemas, EXTENSIONS)?;
    check_references(&schemas)?;
    let mut file = json!({ "schemas": Value::Object(schemas) });
    sort_keys(&mut file);
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    Ok(text)
}

/// A top-level kind the generator found, with what its schema needs beyond k8s-openapi's.
struct Kind {
    schema: String,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// The list kind (`PodList`), for kinds that can be listed.
    list_kind: Option<&'static str>,
}

fn kind<T: Resource + JsonSchema>(
    generator: &mut SchemaGenerator,
    list_kind: Option<&'static str>,
) -> Kind {
    generator.subschema_for::<T>();
    Kind {
        schema: T::schema_name().into_owned(),
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind,
    }
}

/// Every kind capstan-api's registry serves, the kinds of their subresources' bodies, and the
/// meta types the paths refer to. capstan-api's tests check that every kind its registry
/// serves has a schema here.
fn roots(generator: &mut SchemaGenerator, kinds: &mut Vec<Kind>) {
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    use k8s_openapi::apimachinery::pkg::apis::meta;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
    macro_rules! listable {
        ($($path:ty),* $(,)?) => {
            $( kinds.push(kind::<$path>(generator, Some(<$path as ListableResource>::LIST_KIND))); )*
        };
    }
    macro_rules! unlistable {
        ($($path:ty),* $(,)?) => {
            $( kinds.push(kind::<$path>(generator, None)); )*
        };
    }
    listable!(
        core::v1::ComponentStatus,
        core::v1::ConfigMap,
        core::v1::Endpoints,
        core::v1::Event,
        core::v1::LimitRange,
        core::v1::Namespace,
        core::v1::Node,
        core::v1::PersistentVolumeClaim,
        core::v1::PersistentVolume,
        core::v1::Pod,
        core::v1::PodTemplate,
        core::v1::ReplicationController,
        core::v1::ResourceQuota,
        core::v1::Secret,
        core::v1::ServiceAccount,
        core::v1::Service,
        admissionregistration::v1::MutatingWebhookConfiguration,
        admissionregistration::v1::ValidatingAdmissionPolicy,
        admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        admissionregistration::v1::ValidatingWebhookConfiguration,
        apiextensions::v1::CustomResourceDefinition,
        apiregistration::v1::APIService,
        apps::v1::ControllerRevision,
        apps::v1::DaemonSet,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        autoscaling::v1::HorizontalPodAutoscaler,
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::CronJob,
        batch::v1::Job,
        certificates::v1::CertificateSigningRequest,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        events::v1::Event,
        flowcontrol::v1::FlowSchema,
        flowcontrol::v1::PriorityLevelConfiguration,
        networking::v1::IngressClass,
        networking::v1::Ingress,
        networking::v1::IPAddress,
        networking::v1::NetworkPolicy,
        networking::v1::ServiceCIDR,
        node::v1::RuntimeClass,
        policy::v1::PodDisruptionBudget,
        rbac::v1::ClusterRoleBinding,
        rbac::v1::ClusterRole,
        rbac::v1::RoleBinding,
        rbac::v1::Role,
        scheduling::v1::PriorityClass,
        storage::v1::CSIDriver,
        storage::v1::CSINode,
        storage::v1::CSIStorageCapacity,
        storage::v1::StorageClass,
        storage::v1::VolumeAttachment,
    );
    unlistable!(
        core::v1::Binding,
        authentication::v1::SelfSubjectReview,
        authentication::v1::TokenReview,
        authentication::v1::TokenRequest,
        authorization::v1::LocalSubjectAccessReview,
        authorization::v1::SelfSubjectAccessReview,
        authorization::v1::SelfSubjectRulesReview,
        authorization::v1::SubjectAccessReview,
        autoscaling::v1::Scale,
        policy::v1::Eviction,
    );
    generator.subschema_for::<meta::v1::Status>();
    generator.subschema_for::<meta::v1::DeleteOptions>();
    generator.subschema_for::<meta::v1::WatchEvent<k8s_openapi::apimachinery::pkg::runtime::RawExtension>>();
    generator.subschema_for::<meta::v1::Patch>();
    generator.subschema_for::<meta::v1::ListMeta>();
}

/// Adds a kind's `x-kubernetes-group-version-kind`, and its `<Kind>List` schema if it has one.
fn add_kind(schemas: &mut Map<String, Value>, kind: &Kind) -> anyhow::Result<()> {
    let gvk = |kind_name: &str| json!([{ "group": kind.group, "kind": kind_name, "version": kind.version }]);
    let schema = schemas
        .get_mut(&kind.schema)
        .and_then(Value::as_object_mut)
        .with_context(|| format!("no schema {}", kind.schema))?;
    schema.insert("x-kubernetes-group-version-kind".into(), gvk(kind.kind));
    unrequire_metadata(schema);
    let Some(list_kind) = kind.list_kind else { return Ok(()) };
    // The list's apiVersion and kind read as the kind's own.
    let properties = &schema["properties"];
    let (api_version, kind_property) =
        (properties["apiVersion"].clone(), properties["kind"].clone());
    let list_name = format!("{}List", kind.schema);
    let list = json!({
        "description": format!("{list_kind} is a list of {} objects.", kind.kind),
        "type": "object",
        "properties": {
            "apiVersion": api_version,
            "items": {
                "description": format!("The {} objects of the list.", kind.kind),
                "type": "array",
                "items": { "$ref": format!("#/components/schemas/{}", kind.schema) },
            },
            "kind": kind_property,
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [{ "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta" }],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk(list_kind),
    });
    if !list_name.ends_with(list_kind) {
        bail!("{list_name} does not name {list_kind}");
    }
    schemas.insert(list_name, list);
    Ok(())
}

/// k8s-openapi requires `metadata` because its Rust field is not optional; upstream's schemas
/// do not (a create may leave the name to `generateName`).
fn unrequire_metadata(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| name != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// Gives the types whose JSON is not what their Go struct looks like upstream's OpenAPI v3
/// shapes: IntOrString and Quantity are scalar unions, and the free-form types accept any
/// JSON, which `x-kubernetes-preserve-unknown-fields` tells clients (and capstan-api's schema
/// check) not to look inside.
fn reshape_special_types(schemas: &mut Map<String, Value>) -> anyhow::Result<()> {
    const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
    const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
    const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
    const CRD_JSON: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON";
    let mut reshape = |name: &str, keep_type: bool, extra: Value| -> anyhow::Result<()> {
        let schema = schemas
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .with_context(|| format!("no schema {name}"))?;
        if !keep_type {
            schema.remove("type");
        }
        // k8s-openapi marks Quantity as int-or-string; upstream's v3 document does not.
        schema.remove("x-kubernetes-int-or-string");
        if let Value::Object(extra) = extra {
            schema.extend(extra);
        }
        Ok(())
    };
    reshape(
        INT_OR_STRING,
        false,
        json!({
            "format": "int-or-string",
            "oneOf": [{ "type": "integer" }, { "type": "string" }],
            "x-kubernetes-int-or-string": true,
        }),
    )?;
    reshape(QUANTITY, false, json!({ "oneOf": [{ "type": "string" }, { "type": "number" }] }))?;
    reshape(RAW_EXTENSION, true, json!({ "x-kubernetes-preserve-unknown-fields": true }))?;
    reshape(CRD_JSON, false, json!({ "x-kubernetes-preserve-unknown-fields": true }))?;
    Ok(())
}

/// Applies the [`EXTENSIONS`] table; every line must name a schema and property that exist,
/// so that a type renamed upstream fails generation instead of silently losing its facts.
fn apply_extensions(schemas: &mut Map<String, Value>, table: &str) -> anyhow::Result<()> {
    for (number, line) in table.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let context = || format!("extension table line {}: {line:?}", number + 1);
        let mut words = line.split_whitespace();
        let (Some(schema_name), Some(property)) = (words.next(), words.next()) else {
            bail!("{}: want `<schema> <property or -> <key>=<value>...`", context());
        };
        let schema = schemas
            .get_mut(schema_name)
            .and_then(Value::as_object_mut)
            .with_context(|| format!("{}: no such schema", context()))?;
        let target = if property == "-" {
            schema
        } else {
            schema
                .get_mut("properties")
                .and_then(|properties| properties.get_mut(property))
                .and_then(Value::as_object_mut)
                .with_context(|| format!("{}: no such property", context()))?
        };
        for fact in words {
            let (key, value) = fact
                .split_once('=')
                .with_context(|| format!("{}: {fact:?} is not key=value", context()))?;
            let value = match key {
                "list-map-keys" => json!(value.split(',').collect::<Vec<_>>()),
                "list-type" | "map-type" | "patch-merge-key" | "patch-strategy" => json!(value),
                _ => bail!("{}: unknown extension {key:?}", context()),
            };
            target.insert(format!("x-kubernetes-{key}"), value);
        }
    }
    Ok(())
}

/// Every `$ref` must name a schema in the file.
fn check_references(schemas: &Map<String, Value>) -> anyhow::Result<()> {
    fn visit(value: &Value, schemas: &Map<String, Value>, from: &str) -> anyhow::Result<()> {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    let name = reference.strip_prefix("#/components/schemas/").unwrap_or(reference);
                    if !schemas.contains_key(name) {
                        bail!("{from} refers to {reference}, which is not generated");
                    }
                }
                object.values().try_for_each(|value| visit(value, schemas, from))
            }
            Value::Array(items) => items.iter().try_for_each(|value| visit(value, schemas, from)),
            _ => Ok(()),
        }
    }
    schemas.iter().try_for_each(|(name, schema)| visit(schema, schemas, name))
}

/// Sorts every object's keys, as upstream's documents are, so the output is deterministic.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(object).into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            for (key, mut value) in entries {
                sort_keys(&mut value);
                object.insert(key, value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// The `x-kubernetes-*` list, map and patch extensions of kube-apiserver v1.33's schemas,
/// one line per schema property (`-` for the schema itself): `<schema> <property>
/// <key>=<value>...`, where a key names `x-kubernetes-<key>` and `list-map-keys` takes a
/// comma-separated list. Derived from upstream's published v1.33 OpenAPI definitions
/// (kubernetes `api/openapi-spec`), restricted to the schemas generated here.
const EXTENSIONS: &str = "
io.k8s.api.admissionregistration.v1.MatchResources - map-type=atomic
io.k8s.api.admissionregistration.v1.MatchResources excludeResourceRules list-type=atomic
io.k8s.api.admissionregistration.v1.MatchResources resourceRules list-type=atomic
io.k8s.api.admissionregistration.v1.MutatingWebhook admissionReviewVersions list-type=atomic
io.k8s.api.admissionregistration.v1.MutatingWebhook matchConditions list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.MutatingWebhook rules list-type=atomic
io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration webhooks list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations - map-type=atomic
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations apiGroups list-type=atomic
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations apiVersions list-type=atomic
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations operations list-type=atomic
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations resourceNames list-type=atomic
io.k8s.api.admissionregistration.v1.NamedRuleWithOperations resources list-type=atomic
io.k8s.api.admissionregistration.v1.ParamKind - map-type=atomic
io.k8s.api.admissionregistration.v1.ParamRef - map-type=atomic
io.k8s.api.admissionregistration.v1.RuleWithOperations apiGroups list-type=atomic
io.k8s.api.admissionregistration.v1.RuleWithOperations apiVersions list-type=atomic
io.k8s.api.admissionregistration.v1.RuleWithOperations operations list-type=atomic
io.k8s.api.admissionregistration.v1.RuleWithOperations resources list-type=atomic
io.k8s.api.admissionregistration.v1.TypeChecking expressionWarnings list-type=atomic
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec validationActions list-type=set
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec auditAnnotations list-type=atomic
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec matchConditions list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec validations list-type=atomic
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec variables list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus conditions list-type=map list-map-keys=type
io.k8s.api.admissionregistration.v1.ValidatingWebhook admissionReviewVersions list-type=atomic
io.k8s.api.admissionregistration.v1.ValidatingWebhook matchConditions list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.ValidatingWebhook rules list-type=atomic
io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration webhooks list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.admissionregistration.v1.Variable - map-type=atomic
io.k8s.api.apps.v1.DaemonSetStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.apps.v1.DeploymentSpec strategy patch-strategy=retainKeys
io.k8s.api.apps.v1.DeploymentStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.apps.v1.ReplicaSetStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.apps.v1.StatefulSetSpec volumeClaimTemplates list-type=atomic
io.k8s.api.apps.v1.StatefulSetStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.authentication.v1.TokenRequestSpec audiences list-type=atomic
io.k8s.api.authentication.v1.TokenReviewSpec audiences list-type=atomic
io.k8s.api.authentication.v1.TokenReviewStatus audiences list-type=atomic
io.k8s.api.authentication.v1.UserInfo groups list-type=atomic
io.k8s.api.authorization.v1.FieldSelectorAttributes requirements list-type=atomic
io.k8s.api.authorization.v1.LabelSelectorAttributes requirements list-type=atomic
io.k8s.api.authorization.v1.NonResourceRule nonResourceURLs list-type=atomic
io.k8s.api.authorization.v1.NonResourceRule verbs list-type=atomic
io.k8s.api.authorization.v1.ResourceRule apiGroups list-type=atomic
io.k8s.api.authorization.v1.ResourceRule resourceNames list-type=atomic
io.k8s.api.authorization.v1.ResourceRule resources list-type=atomic
io.k8s.api.authorization.v1.ResourceRule verbs list-type=atomic
io.k8s.api.authorization.v1.SubjectAccessReviewSpec groups list-type=atomic
io.k8s.api.authorization.v1.SubjectRulesReviewStatus nonResourceRules list-type=atomic
io.k8s.api.authorization.v1.SubjectRulesReviewStatus resourceRules list-type=atomic
io.k8s.api.autoscaling.v1.CrossVersionObjectReference - map-type=atomic
io.k8s.api.autoscaling.v2.HPAScalingRules policies list-type=atomic
io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec metrics list-type=atomic
io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus currentMetrics list-type=atomic
io.k8s.api.batch.v1.CronJobStatus active list-type=atomic
io.k8s.api.batch.v1.JobStatus conditions list-type=atomic patch-merge-key=type patch-strategy=merge
io.k8s.api.batch.v1.PodFailurePolicy rules list-type=atomic
io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement values list-type=set
io.k8s.api.batch.v1.PodFailurePolicyRule onPodConditions list-type=atomic
io.k8s.api.batch.v1.SuccessPolicy rules list-type=atomic
io.k8s.api.batch.v1.UncountedTerminatedPods failed list-type=set
io.k8s.api.batch.v1.UncountedTerminatedPods succeeded list-type=set
io.k8s.api.certificates.v1.CertificateSigningRequestSpec groups list-type=atomic
io.k8s.api.certificates.v1.CertificateSigningRequestSpec request list-type=atomic
io.k8s.api.certificates.v1.CertificateSigningRequestSpec usages list-type=atomic
io.k8s.api.certificates.v1.CertificateSigningRequestStatus certificate list-type=atomic
io.k8s.api.certificates.v1.CertificateSigningRequestStatus conditions list-type=map list-map-keys=type
io.k8s.api.core.v1.Capabilities add list-type=atomic
io.k8s.api.core.v1.Capabilities drop list-type=atomic
io.k8s.api.core.v1.CephFSPersistentVolumeSource monitors list-type=atomic
io.k8s.api.core.v1.CephFSVolumeSource monitors list-type=atomic
io.k8s.api.core.v1.ComponentStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.ConfigMapKeySelector - map-type=atomic
io.k8s.api.core.v1.ConfigMapProjection items list-type=atomic
io.k8s.api.core.v1.ConfigMapVolumeSource items list-type=atomic
io.k8s.api.core.v1.Container args list-type=atomic
io.k8s.api.core.v1.Container command list-type=atomic
io.k8s.api.core.v1.Container env list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.Container envFrom list-type=atomic
io.k8s.api.core.v1.Container ports list-type=map list-map-keys=containerPort,protocol patch-merge-key=containerPort patch-strategy=merge
io.k8s.api.core.v1.Container resizePolicy list-type=atomic
io.k8s.api.core.v1.Container volumeDevices list-type=map list-map-keys=devicePath patch-merge-key=devicePath patch-strategy=merge
io.k8s.api.core.v1.Container volumeMounts list-type=map list-map-keys=mountPath patch-merge-key=mountPath patch-strategy=merge
io.k8s.api.core.v1.ContainerImage names list-type=atomic
io.k8s.api.core.v1.ContainerStatus allocatedResourcesStatus list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.ContainerStatus volumeMounts list-type=map list-map-keys=mountPath patch-merge-key=mountPath patch-strategy=merge
io.k8s.api.core.v1.DownwardAPIProjection items list-type=atomic
io.k8s.api.core.v1.DownwardAPIVolumeSource items list-type=atomic
io.k8s.api.core.v1.EndpointAddress - map-type=atomic
io.k8s.api.core.v1.EndpointPort - map-type=atomic
io.k8s.api.core.v1.EndpointSubset addresses list-type=atomic
io.k8s.api.core.v1.EndpointSubset notReadyAddresses list-type=atomic
io.k8s.api.core.v1.EndpointSubset ports list-type=atomic
io.k8s.api.core.v1.Endpoints subsets list-type=atomic
io.k8s.api.core.v1.EphemeralContainer args list-type=atomic
io.k8s.api.core.v1.EphemeralContainer command list-type=atomic
io.k8s.api.core.v1.EphemeralContainer env list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.EphemeralContainer envFrom list-type=atomic
io.k8s.api.core.v1.EphemeralContainer ports list-type=map list-map-keys=containerPort,protocol patch-merge-key=containerPort patch-strategy=merge
io.k8s.api.core.v1.EphemeralContainer resizePolicy list-type=atomic
io.k8s.api.core.v1.EphemeralContainer volumeDevices list-type=map list-map-keys=devicePath patch-merge-key=devicePath patch-strategy=merge
io.k8s.api.core.v1.EphemeralContainer volumeMounts list-type=map list-map-keys=mountPath patch-merge-key=mountPath patch-strategy=merge
io.k8s.api.core.v1.ExecAction command list-type=atomic
io.k8s.api.core.v1.FCVolumeSource targetWWNs list-type=atomic
io.k8s.api.core.v1.FCVolumeSource wwids list-type=atomic
io.k8s.api.core.v1.HTTPGetAction httpHeaders list-type=atomic
io.k8s.api.core.v1.HostAlias hostnames list-type=atomic
io.k8s.api.core.v1.ISCSIPersistentVolumeSource portals list-type=atomic
io.k8s.api.core.v1.ISCSIVolumeSource portals list-type=atomic
io.k8s.api.core.v1.LimitRangeSpec limits list-type=atomic
io.k8s.api.core.v1.LinuxContainerUser supplementalGroups list-type=atomic
io.k8s.api.core.v1.LoadBalancerIngress ports list-type=atomic
io.k8s.api.core.v1.LoadBalancerStatus ingress list-type=atomic
io.k8s.api.core.v1.LocalObjectReference - map-type=atomic
io.k8s.api.core.v1.NamespaceSpec finalizers list-type=atomic
io.k8s.api.core.v1.NamespaceStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.NodeAffinity preferredDuringSchedulingIgnoredDuringExecution list-type=atomic
io.k8s.api.core.v1.NodeSelector - map-type=atomic
io.k8s.api.core.v1.NodeSelector nodeSelectorTerms list-type=atomic
io.k8s.api.core.v1.NodeSelectorRequirement values list-type=atomic
io.k8s.api.core.v1.NodeSelectorTerm - map-type=atomic
io.k8s.api.core.v1.NodeSelectorTerm matchExpressions list-type=atomic
io.k8s.api.core.v1.NodeSelectorTerm matchFields list-type=atomic
io.k8s.api.core.v1.NodeSpec podCIDRs list-type=set patch-strategy=merge
io.k8s.api.core.v1.NodeSpec taints list-type=atomic
io.k8s.api.core.v1.NodeStatus addresses list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.NodeStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.NodeStatus images list-type=atomic
io.k8s.api.core.v1.NodeStatus runtimeHandlers list-type=atomic
io.k8s.api.core.v1.NodeStatus volumesAttached list-type=atomic
io.k8s.api.core.v1.NodeStatus volumesInUse list-type=atomic
io.k8s.api.core.v1.ObjectFieldSelector - map-type=atomic
io.k8s.api.core.v1.ObjectReference - map-type=atomic
io.k8s.api.core.v1.PersistentVolumeClaimSpec accessModes list-type=atomic
io.k8s.api.core.v1.PersistentVolumeClaimStatus accessModes list-type=atomic
io.k8s.api.core.v1.PersistentVolumeClaimStatus allocatedResourceStatuses map-type=granular
io.k8s.api.core.v1.PersistentVolumeClaimStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.PersistentVolumeSpec accessModes list-type=atomic
io.k8s.api.core.v1.PersistentVolumeSpec claimRef map-type=granular
io.k8s.api.core.v1.PersistentVolumeSpec mountOptions list-type=atomic
io.k8s.api.core.v1.PodAffinity preferredDuringSchedulingIgnoredDuringExecution list-type=atomic
io.k8s.api.core.v1.PodAffinity requiredDuringSchedulingIgnoredDuringExecution list-type=atomic
io.k8s.api.core.v1.PodAffinityTerm matchLabelKeys list-type=atomic
io.k8s.api.core.v1.PodAffinityTerm mismatchLabelKeys list-type=atomic
io.k8s.api.core.v1.PodAffinityTerm namespaces list-type=atomic
io.k8s.api.core.v1.PodAntiAffinity preferredDuringSchedulingIgnoredDuringExecution list-type=atomic
io.k8s.api.core.v1.PodAntiAffinity requiredDuringSchedulingIgnoredDuringExecution list-type=atomic
io.k8s.api.core.v1.PodDNSConfig nameservers list-type=atomic
io.k8s.api.core.v1.PodDNSConfig options list-type=atomic
io.k8s.api.core.v1.PodDNSConfig searches list-type=atomic
io.k8s.api.core.v1.PodSecurityContext supplementalGroups list-type=atomic
io.k8s.api.core.v1.PodSecurityContext sysctls list-type=atomic
io.k8s.api.core.v1.PodSpec containers list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.PodSpec ephemeralContainers list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.PodSpec hostAliases list-type=map list-map-keys=ip patch-merge-key=ip patch-strategy=merge
io.k8s.api.core.v1.PodSpec imagePullSecrets list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.PodSpec initContainers list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.PodSpec nodeSelector map-type=atomic
io.k8s.api.core.v1.PodSpec readinessGates list-type=atomic
io.k8s.api.core.v1.PodSpec resourceClaims list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge,retainKeys
io.k8s.api.core.v1.PodSpec schedulingGates list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.PodSpec tolerations list-type=atomic
io.k8s.api.core.v1.PodSpec topologySpreadConstraints list-type=map list-map-keys=topologyKey,whenUnsatisfiable patch-merge-key=topologyKey patch-strategy=merge
io.k8s.api.core.v1.PodSpec volumes list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge,retainKeys
io.k8s.api.core.v1.PodStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.PodStatus containerStatuses list-type=atomic
io.k8s.api.core.v1.PodStatus ephemeralContainerStatuses list-type=atomic
io.k8s.api.core.v1.PodStatus hostIPs list-type=atomic patch-merge-key=ip patch-strategy=merge
io.k8s.api.core.v1.PodStatus initContainerStatuses list-type=atomic
io.k8s.api.core.v1.PodStatus podIPs list-type=map list-map-keys=ip patch-merge-key=ip patch-strategy=merge
io.k8s.api.core.v1.PodStatus resourceClaimStatuses list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge,retainKeys
io.k8s.api.core.v1.ProjectedVolumeSource sources list-type=atomic
io.k8s.api.core.v1.RBDPersistentVolumeSource monitors list-type=atomic
io.k8s.api.core.v1.RBDVolumeSource monitors list-type=atomic
io.k8s.api.core.v1.ReplicationControllerSpec selector map-type=atomic
io.k8s.api.core.v1.ReplicationControllerStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.ResourceFieldSelector - map-type=atomic
io.k8s.api.core.v1.ResourceQuotaSpec scopes list-type=atomic
io.k8s.api.core.v1.ResourceRequirements claims list-type=map list-map-keys=name
io.k8s.api.core.v1.ResourceStatus resources list-type=map list-map-keys=resourceID
io.k8s.api.core.v1.ScopeSelector - map-type=atomic
io.k8s.api.core.v1.ScopeSelector matchExpressions list-type=atomic
io.k8s.api.core.v1.ScopedResourceSelectorRequirement values list-type=atomic
io.k8s.api.core.v1.SecretKeySelector - map-type=atomic
io.k8s.api.core.v1.SecretProjection items list-type=atomic
io.k8s.api.core.v1.SecretReference - map-type=atomic
io.k8s.api.core.v1.SecretVolumeSource items list-type=atomic
io.k8s.api.core.v1.ServiceAccount imagePullSecrets list-type=atomic
io.k8s.api.core.v1.ServiceAccount secrets list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.core.v1.ServiceSpec clusterIPs list-type=atomic
io.k8s.api.core.v1.ServiceSpec externalIPs list-type=atomic
io.k8s.api.core.v1.ServiceSpec ipFamilies list-type=atomic
io.k8s.api.core.v1.ServiceSpec loadBalancerSourceRanges list-type=atomic
io.k8s.api.core.v1.ServiceSpec ports list-type=map list-map-keys=port,protocol patch-merge-key=port patch-strategy=merge
io.k8s.api.core.v1.ServiceSpec selector map-type=atomic
io.k8s.api.core.v1.ServiceStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.core.v1.TopologySelectorLabelRequirement values list-type=atomic
io.k8s.api.core.v1.TopologySelectorTerm - map-type=atomic
io.k8s.api.core.v1.TopologySelectorTerm matchLabelExpressions list-type=atomic
io.k8s.api.core.v1.TopologySpreadConstraint matchLabelKeys list-type=atomic
io.k8s.api.core.v1.TypedLocalObjectReference - map-type=atomic
io.k8s.api.discovery.v1.Endpoint addresses list-type=set
io.k8s.api.discovery.v1.EndpointHints forNodes list-type=atomic
io.k8s.api.discovery.v1.EndpointHints forZones list-type=atomic
io.k8s.api.discovery.v1.EndpointPort - map-type=atomic
io.k8s.api.discovery.v1.EndpointSlice endpoints list-type=atomic
io.k8s.api.discovery.v1.EndpointSlice ports list-type=atomic
io.k8s.api.flowcontrol.v1.FlowSchemaSpec rules list-type=atomic
io.k8s.api.flowcontrol.v1.FlowSchemaStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.flowcontrol.v1.NonResourcePolicyRule nonResourceURLs list-type=set
io.k8s.api.flowcontrol.v1.NonResourcePolicyRule verbs list-type=set
io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects nonResourceRules list-type=atomic
io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects resourceRules list-type=atomic
io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects subjects list-type=atomic
io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.flowcontrol.v1.ResourcePolicyRule apiGroups list-type=set
io.k8s.api.flowcontrol.v1.ResourcePolicyRule namespaces list-type=set
io.k8s.api.flowcontrol.v1.ResourcePolicyRule resources list-type=set
io.k8s.api.flowcontrol.v1.ResourcePolicyRule verbs list-type=set
io.k8s.api.networking.v1.HTTPIngressRuleValue paths list-type=atomic
io.k8s.api.networking.v1.IPBlock except list-type=atomic
io.k8s.api.networking.v1.IngressLoadBalancerIngress ports list-type=atomic
io.k8s.api.networking.v1.IngressLoadBalancerStatus ingress list-type=atomic
io.k8s.api.networking.v1.IngressSpec rules list-type=atomic
io.k8s.api.networking.v1.IngressSpec tls list-type=atomic
io.k8s.api.networking.v1.IngressTLS hosts list-type=atomic
io.k8s.api.networking.v1.NetworkPolicyEgressRule ports list-type=atomic
io.k8s.api.networking.v1.NetworkPolicyEgressRule to list-type=atomic
io.k8s.api.networking.v1.NetworkPolicyIngressRule from list-type=atomic
io.k8s.api.networking.v1.NetworkPolicyIngressRule ports list-type=atomic
io.k8s.api.networking.v1.NetworkPolicySpec egress list-type=atomic
io.k8s.api.networking.v1.NetworkPolicySpec ingress list-type=atomic
io.k8s.api.networking.v1.NetworkPolicySpec policyTypes list-type=atomic
io.k8s.api.networking.v1.ServiceBackendPort - map-type=atomic
io.k8s.api.networking.v1.ServiceCIDRSpec cidrs list-type=atomic
io.k8s.api.networking.v1.ServiceCIDRStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.node.v1.Scheduling nodeSelector map-type=atomic
io.k8s.api.node.v1.Scheduling tolerations list-type=atomic
io.k8s.api.policy.v1.PodDisruptionBudgetSpec selector patch-strategy=replace
io.k8s.api.policy.v1.PodDisruptionBudgetStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
io.k8s.api.rbac.v1.AggregationRule clusterRoleSelectors list-type=atomic
io.k8s.api.rbac.v1.ClusterRole rules list-type=atomic
io.k8s.api.rbac.v1.ClusterRoleBinding subjects list-type=atomic
io.k8s.api.rbac.v1.PolicyRule apiGroups list-type=atomic
io.k8s.api.rbac.v1.PolicyRule nonResourceURLs list-type=atomic
io.k8s.api.rbac.v1.PolicyRule resourceNames list-type=atomic
io.k8s.api.rbac.v1.PolicyRule resources list-type=atomic
io.k8s.api.rbac.v1.PolicyRule verbs list-type=atomic
io.k8s.api.rbac.v1.Role rules list-type=atomic
io.k8s.api.rbac.v1.RoleBinding subjects list-type=atomic
io.k8s.api.rbac.v1.RoleRef - map-type=atomic
io.k8s.api.rbac.v1.Subject - map-type=atomic
io.k8s.api.storage.v1.CSIDriverSpec tokenRequests list-type=atomic
io.k8s.api.storage.v1.CSIDriverSpec volumeLifecycleModes list-type=set
io.k8s.api.storage.v1.CSINodeDriver topologyKeys list-type=atomic
io.k8s.api.storage.v1.CSINodeSpec drivers list-type=map list-map-keys=name patch-merge-key=name patch-strategy=merge
io.k8s.api.storage.v1.StorageClass allowedTopologies list-type=atomic
io.k8s.api.storage.v1.StorageClass mountOptions list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames categories list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames shortNames list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec versions list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus conditions list-type=map list-map-keys=type
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus storedVersions list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion additionalPrinterColumns list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion selectableFields list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps allOf list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps anyOf list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps enum list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps oneOf list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps required list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps x-kubernetes-list-map-keys list-type=atomic
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps x-kubernetes-validations list-type=map list-map-keys=rule patch-merge-key=rule patch-strategy=merge
io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion conversionReviewVersions list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions dryRun list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement values list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector - map-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector matchExpressions list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement values list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta finalizers list-type=set patch-strategy=merge
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta managedFields list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta ownerReferences list-type=map list-map-keys=uid patch-merge-key=uid patch-strategy=merge
io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference - map-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.Status details list-type=atomic
io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails causes list-type=atomic
io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec caBundle list-type=atomic
io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus conditions list-type=map list-map-keys=type patch-merge-key=type patch-strategy=merge
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_file_is_fresh() {
        run(&["--check"]).unwrap();
    }
}
