//! The registry of resource types: every built-in kind with its group, version, names,
//! scope, verbs, short names, categories and subresources, as discovery publishes them and as
//! kubectl resolves names against them.

mod builtin;

/// Whether objects of a type live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A group, version and kind; the group is empty for the core ("legacy") API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupVersionKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

impl GroupVersionKind {
    pub const fn new(group: &'static str, version: &'static str, kind: &'static str) -> Self {
        GroupVersionKind { group, version, kind }
    }

    /// The `apiVersion` field's value: `v1`, or `apps/v1`.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// What follows the object's name in the path: `status`, `scale`, `binding`, ...
    pub name: &'static str,
    /// The kind of the subresource's body, which may belong to another group
    /// (`autoscaling/v1` Scale, `policy/v1` Eviction).
    pub kind: GroupVersionKind,
    pub verbs: &'static [&'static str],
}

/// One resource type as served at one group-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    /// The path segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub scope: Scope,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    /// Such as `all`, which `kubectl get all` expands.
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

impl ResourceType {
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(self.group, self.version, self.kind)
    }

    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }

    pub fn is_namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|subresource| subresource.name == name)
    }
}

/// A group and the versions it serves, the preferred one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGroup {
    pub name: &'static str,
    pub versions: Vec<&'static str>,
}

impl ApiGroup {
    pub fn preferred_version(&self) -> &'static str {
        self.versions[0]
    }
}

/// The API groups in the order kube-apiserver lists them, core first.
const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

/// Versions of a group that are served but not preferred, in the order discovery lists them
/// after the preferred one.
const OLDER_VERSIONS: &[(&str, &str)] = &[("autoscaling", "v1")];

/// Every built-in resource type.
pub fn builtin() -> &'static [ResourceType] {
    builtin::BUILTIN
}

/// The type served at `group`/`version` under the path segment `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    builtin().iter().find(|t| t.group == group && t.version == version && t.plural == plural)
}

/// The type of `apiVersion` + `kind`, as an object names itself.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    builtin().iter().find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// The groups with their versions, preferred first, in kube-apiserver's order.
pub fn groups() -> Vec<ApiGroup> {
    GROUP_ORDER
        .iter()
        .map(|&name| {
            let mut versions: Vec<&'static str> = Vec::new();
            for t in builtin().iter().filter(|t| t.group == name) {
                if !versions.contains(&t.version) {
                    versions.push(t.version);
                }
            }
            // The preferred version first: every version not listed as older.
            versions.sort_by_key(|version| OLDER_VERSIONS.contains(&(name, version)));
            ApiGroup { name, versions }
        })
        .collect()
}

/// Resolves a name as kubectl does (`pods`, `pod`, `po`, `deployments.apps`, `hpa`): the
/// matching types at their group's preferred version.
pub fn resolve(name: &str) -> Vec<&'static ResourceType> {
    let name = name.to_ascii_lowercase();
    let preferred: Vec<ApiGroup> = groups();
    let is_preferred = |t: &ResourceType| {
        preferred
            .iter()
            .any(|group| group.name == t.group && group.preferred_version() == t.version)
    };
    let matches_name = |t: &ResourceType, wanted: &str| {
        t.plural == wanted || t.singular == wanted || t.short_names.contains(&wanted)
    };
    builtin()
        .iter()
        .filter(|t| is_preferred(t))
        .filter(|t| {
            matches_name(t, &name)
                || name.split_once('.').is_some_and(|(resource, rest)| {
                    // `deployments.apps`, or with the version: `deployments.v1.apps`.
                    let group = match rest.split_once('.') {
                        Some((version, group)) if version == t.version => group,
                        _ => rest,
                    };
                    t.group == group && matches_name(t, resource)
                })
        })
        .collect()
}

/// `v1`, or `group/version`: the `apiVersion` (and discovery's `groupVersion`) of a group.
pub(crate) fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_type_is_listed_once_with_sane_facts() {
        let mut seen = HashSet::new();
        for t in builtin() {
            assert!(seen.insert((t.group, t.version, t.plural)), "{} listed twice", t.plural);
            assert!(GROUP_ORDER.contains(&t.group), "group {:?} not ordered", t.group);
            assert!(!t.verbs.is_empty(), "{} has no verbs", t.plural);
            assert_eq!(t.plural, t.plural.to_ascii_lowercase());
            for subresource in t.subresources {
                assert!(
                    !subresource.verbs.is_empty(),
                    "{}/{} has no verbs",
                    t.plural,
                    subresource.name
                );
            }
        }
        assert_eq!(builtin().len(), 61);
    }

    #[test]
    fn short_names_resolve_uniquely_at_the_preferred_version() {
        for (name, api_version, plural) in [
            ("po", "v1", "pods"),
            ("pod", "v1", "pods"),
            ("svc", "v1", "services"),
            ("deploy", "apps/v1", "deployments"),
            ("deployments.apps", "apps/v1", "deployments"),
            ("deployments.v1.apps", "apps/v1", "deployments"),
            ("hpa", "autoscaling/v2", "horizontalpodautoscalers"),
            ("crds", "apiextensions.k8s.io/v1", "customresourcedefinitions"),
            ("CM", "v1", "configmaps"),
            ("netpol", "networking.k8s.io/v1", "networkpolicies"),
        ] {
            let found = resolve(name);
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            assert_eq!(
                (found[0].api_version().as_str(), found[0].plural),
                (api_version, plural),
                "{name}"
            );
        }
        // Two groups serve events: kubectl asks which; both are offered.
        assert_eq!(resolve("ev").len(), 2);
        assert!(resolve("nonsense").is_empty());
    }

    #[test]
    fn autoscaling_prefers_v2_and_still_serves_v1() {
        let autoscaling = groups().into_iter().find(|g| g.name == "autoscaling").unwrap();
        assert_eq!(autoscaling.versions, ["v2", "v1"]);
        assert!(find("autoscaling", "v1", "horizontalpodautoscalers").is_some());
    }

    #[test]
    fn the_all_category_is_what_kubectl_get_all_shows() {
        let mut all: Vec<&str> = builtin()
            .iter()
            .filter(|t| {
                t.categories.contains(&"all") && !(t.group == "autoscaling" && t.version == "v1")
            })
            .map(|t| t.plural)
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "horizontalpodautoscalers",
                "jobs",
                "pods",
                "replicasets",
                "replicationcontrollers",
                "services",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn subresources_name_their_kinds_across_groups() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deployments.subresource("scale").unwrap().kind.api_version(), "autoscaling/v1");
        let pods = find_kind("v1", "Pod").unwrap();
        assert_eq!(
            pods.subresource("eviction").unwrap().kind,
            GroupVersionKind::new("policy", "v1", "Eviction")
        );
        assert_eq!(pods.subresource("binding").unwrap().verbs, ["create"]);
        assert!(pods.subresource("resize").is_some(), "pods/resize is served in 1.33");
        assert!(find("", "v1", "namespaces").is_some_and(|ns| !ns.has_verb("deletecollection")));
    }

    /// Each type's kind, plural and scope agree with k8s-openapi's v1.33 types, and every
    /// k8s-openapi type listed here is in the registry.
    #[test]
    fn facts_agree_with_k8s_openapi() {
        use k8s_openapi::Resource;
        fn scope_of<T: Resource>() -> Scope
        where
            T::Scope: 'static,
        {
            if std::any::TypeId::of::<T::Scope>()
                == std::any::TypeId::of::<k8s_openapi::ClusterResourceScope>()
            {
                Scope::Cluster
            } else {
                Scope::Namespaced
            }
        }
        macro_rules! check {
            ($($path:path),* $(,)?) => {{
                let mut checked = 0;
                $(
                    let t = find_kind(<$path as Resource>::API_VERSION, <$path as Resource>::KIND)
                        .unwrap_or_else(|| panic!("{} {} missing", <$path as Resource>::API_VERSION, <$path as Resource>::KIND));
                    assert_eq!(t.plural, <$path as Resource>::URL_PATH_SEGMENT, "{}", t.kind);
                    assert_eq!(t.scope, scope_of::<$path>(), "{}", t.kind);
                    checked += 1;
                )*
                checked
            }};
        }
        use k8s_openapi::api::*;
        let checked = check!(
            core::v1::Binding, core::v1::ComponentStatus, core::v1::ConfigMap, core::v1::Endpoints,
            core::v1::Event, core::v1::LimitRange, core::v1::Namespace, core::v1::Node,
            core::v1::PersistentVolumeClaim, core::v1::PersistentVolume, core::v1::Pod,
            core::v1::PodTemplate, core::v1::ReplicationController, core::v1::ResourceQuota,
            core::v1::Secret, core::v1::ServiceAccount, core::v1::Service,
            admissionregistration::v1::MutatingWebhookConfiguration,
            admissionregistration::v1::ValidatingAdmissionPolicy,
            admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            admissionregistration::v1::ValidatingWebhookConfiguration,
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
            apps::v1::ControllerRevision, apps::v1::DaemonSet, apps::v1::Deployment,
            apps::v1::ReplicaSet, apps::v1::StatefulSet,
            authentication::v1::SelfSubjectReview, authentication::v1::TokenReview,
            authorization::v1::LocalSubjectAccessReview, authorization::v1::SelfSubjectAccessReview,
            authorization::v1::SelfSubjectRulesReview, authorization::v1::SubjectAccessReview,
            autoscaling::v1::HorizontalPodAutoscaler, autoscaling::v2::HorizontalPodAutoscaler,
            batch::v1::CronJob, batch::v1::Job,
            certificates::v1::CertificateSigningRequest, coordination::v1::Lease,
            discovery::v1::EndpointSlice, events::v1::Event,
            flowcontrol::v1::FlowSchema, flowcontrol::v1::PriorityLevelConfiguration,
            networking::v1::IngressClass, networking::v1::Ingress, networking::v1::IPAddress,
            networking::v1::NetworkPolicy, networking::v1::ServiceCIDR,
            node::v1::RuntimeClass, policy::v1::PodDisruptionBudget,
            rbac::v1::ClusterRoleBinding, rbac::v1::ClusterRole, rbac::v1::RoleBinding, rbac::v1::Role,
            scheduling::v1::PriorityClass,
            storage::v1::CSIDriver, storage::v1::CSINode, storage::v1::CSIStorageCapacity,
            storage::v1::StorageClass, storage::v1::VolumeAttachment,
        );
        assert_eq!(checked, builtin().len(), "a registry type has no k8s-openapi counterpart here");
    }
}
