//! What requeues a Service in the endpoints and EndpointSlice controllers. Every watch goes
//! through a reflector before it triggers anything, so a reconcile never runs ahead of the
//! caches it reads. Objects that a (re)list brings are not mapped one by one: until the list
//! is complete the cache still holds what it held before; the list's completion requeues every
//! Service instead. Pod changes requeue the Services that select the pod now and those that
//! selected it before, so that a pod whose labels changed also leaves its old Services.
//! Reconciles wait until every cache has been filled once ([`Listed`]).

use crate::service_endpoints::{is_ready, selects_labels};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::watch;

/// Which completed lists of a watch requeue every Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relists {
    /// Every one: the Services' own watch, whose first list is what starts the controller.
    All,
    /// Every one but the first: reconciles wait until every cache has been filled once, so
    /// the first list of a secondary watch has nothing to add.
    AfterFirst,
}

/// The watches of one controller: hands out the signals each watch's stream gives when its
/// lists complete, and tells when every cache has been filled once.
#[derive(Debug)]
pub(crate) struct Watches {
    relisted: UnboundedSender<()>,
    listed: Vec<watch::Receiver<bool>>,
}

/// Where one watch signals its completed lists.
#[derive(Debug)]
pub(crate) struct ListSignals {
    relisted: UnboundedSender<()>,
    relists: Relists,
    listed: watch::Sender<bool>,
}

/// Whether every cache of a controller has been filled once. Unlike
/// `Store::wait_until_ready`, which wakes only the last task that waited, any number of tasks
/// may wait on it.
#[derive(Debug, Clone)]
pub(crate) struct Listed(Vec<watch::Receiver<bool>>);

impl Listed {
    /// Waits until every cache has been filled once; false if a watch stopped first.
    pub(crate) async fn wait(&self) -> bool {
        for listed in &self.0 {
            if listed.clone().wait_for(|listed| *listed).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Watches {
    /// No watches yet, and the stream of relist signals for `Controller::reconcile_all_on`.
    pub(crate) fn new() -> (Watches, impl Stream<Item = ()> + Send + 'static) {
        let (relisted, receiver) = mpsc::unbounded_channel();
        let relists = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|()| ((), receiver))
        });
        (Watches { relisted, listed: Vec::new() }, relists)
    }

    /// The signals of one more watch.
    pub(crate) fn signals(&mut self, relists: Relists) -> ListSignals {
        let (listed, receiver) = watch::channel(false);
        self.listed.push(receiver);
        ListSignals { relisted: self.relisted.clone(), relists, listed }
    }

    /// Tells when every watch handed signals so far has completed its first list.
    pub(crate) fn listed(&self) -> Listed {
        Listed(self.listed.clone())
    }
}

/// The objects applied or deleted by `events`, a reflector's stream; completed lists are
/// signalled through `signals`.
pub(crate) fn changes<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    signals: ListSignals,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    let mut lists_done = 0_u64;
    events.filter_map(move |event| {
        let item = match event {
            Ok(Event::Apply(object) | Event::Delete(object)) => Some(Ok(object)),
            Ok(Event::InitDone) => {
                lists_done += 1;
                signals.listed.send_replace(true);
                if signals.relists == Relists::All || lists_done > 1 {
                    // Sending fails only once the controller, which receives, has stopped.
                    let _ = signals.relisted.send(());
                }
                None
            }
            Ok(Event::Init | Event::InitApply(_)) => None,
            Err(error) => Some(Err(error)),
        };
        std::future::ready(item)
    })
}

/// A digest of what of a pod its endpoints depend on: labels, hostname and subdomain, node,
/// phase, readiness, deletion, addresses and container ports.
fn endpoint_digest(pod: &Pod) -> u64 {
    let mut hasher = DefaultHasher::new();
    pod.metadata.labels.hash(&mut hasher);
    pod.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    if let Some(spec) = &pod.spec {
        (&spec.hostname, &spec.subdomain, &spec.node_name).hash(&mut hasher);
        let init = spec.init_containers.iter().flatten();
        for container in spec.containers.iter().chain(init) {
            container.restart_policy.hash(&mut hasher);
            for port in container.ports.iter().flatten() {
                (&port.name, port.container_port, &port.protocol).hash(&mut hasher);
            }
        }
    }
    if let Some(status) = &pod.status {
        (&status.phase, &status.pod_ip).hash(&mut hasher);
        for ip in status.pod_ips.iter().flatten() {
            ip.ip.hash(&mut hasher);
        }
    }
    is_ready(pod).hash(&mut hasher);
    hasher.finish()
}

/// What a pod was last seen as: its labels, and its endpoint digest.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    labels: Option<BTreeMap<String, String>>,
    digest: u64,
}

/// The labels each pod was last seen with, by pod uid, so that a change of its labels also
/// requeues the Services its old labels match.
#[derive(Debug, Default)]
pub(crate) struct PodMemberships {
    by_uid: HashMap<String, Seen>,
}

impl PodMemberships {
    /// The names of the Services to requeue for this change of `pod`, given the Services of its
    /// namespace: those its labels match now and those its previous labels match, unless
    /// nothing its endpoints depend on changed. `present` says whether the pod still exists.
    pub(crate) fn services_to_sync<'a>(
        &mut self,
        pod: &Pod,
        services: impl IntoIterator<Item = &'a Service>,
        present: bool,
    ) -> BTreeSet<String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = Seen { labels: pod.metadata.labels.clone(), digest: endpoint_digest(pod) };
        let before = self.by_uid.remove(&uid);
        let mut names = BTreeSet::new();
        if !present || before.as_ref() != Some(&now) {
            let namespace = pod.metadata.namespace.as_deref();
            let matched = |service: &Service, seen: Option<&Seen>| {
                seen.is_some_and(|seen| selects_labels(service, namespace, seen.labels.as_ref()))
            };
            for service in services {
                if matched(service, Some(&now)) || matched(service, before.as_ref()) {
                    names.extend(service.metadata.name.clone());
                }
            }
        }
        if present {
            self.by_uid.insert(uid, now);
        }
        names
    }

    /// Records `pod` as a list shows it, requeueing nothing.
    fn remember(&mut self, pod: &Pod) {
        let seen = Seen { labels: pod.metadata.labels.clone(), digest: endpoint_digest(pod) };
        self.by_uid.insert(pod.metadata.uid.clone().unwrap_or_default(), seen);
    }

    /// Forgets the pods that are not in `pods` (after a relist: deleted meanwhile).
    fn retain_listed(&mut self, pods: &Store<Pod>) {
        let listed: BTreeSet<String> =
            pods.state().iter().filter_map(|pod| pod.metadata.uid.clone()).collect();
        self.by_uid.retain(|uid, _| listed.contains(uid));
    }
}

/// The pod changes of `events` (a reflector's stream filling `pods`) to trigger on, and their
/// mapping to the Services to requeue, for `Controller::watches_stream`. Pods a list brings
/// are remembered, so that a later change of their labels requeues their old Services too.
pub(crate) fn pod_triggers(
    events: impl Stream<Item = Result<Event<Pod>, watcher::Error>>,
    signals: ListSignals,
    services: Store<Service>,
    pods: Store<Pod>,
) -> (
    impl Stream<Item = Result<Pod, watcher::Error>>,
    impl Fn(Pod) -> Vec<ObjectRef<Service>> + Send + Sync + 'static,
) {
    let memberships = Arc::new(Mutex::new(PodMemberships::default()));
    let listing = Arc::clone(&memberships);
    let cache = pods.clone();
    let events = events.inspect(move |event| {
        let mut memberships = listing.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Ok(Event::InitApply(pod)) => memberships.remember(pod),
            Ok(Event::InitDone) => memberships.retain_listed(&cache),
            _ => {}
        }
    });
    let mapper = move |pod: Pod| {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        // The reflector applied the event before passing the pod on, so a pod missing from
        // the cache (or there under another uid) was deleted.
        let present = pods
            .get(&ObjectRef::from_obj(&pod))
            .is_some_and(|cached| cached.metadata.uid == pod.metadata.uid);
        let in_namespace =
            services.state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()));
        let names = memberships.lock().unwrap_or_else(PoisonError::into_inner).services_to_sync(
            &pod,
            in_namespace.iter().map(AsRef::as_ref),
            present,
        );
        names.iter().map(|name| ObjectRef::new(name).within(&namespace)).collect()
    };
    (changes(events, signals), mapper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: serde_json::Value, ready: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "p-uid", "labels": labels},
            "spec": {"containers": []},
            "status": {"podIP": "10.42.0.1", "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap()
    }

    fn service(name: &str, app: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d"},
            "spec": {"selector": {"app": app}}
        }))
        .unwrap()
    }

    /// Feeds the pod changes in order, each `(pod, present, services)` where `services` is how
    /// many of the Services `a`, `b`, `all` exist by then, and checks what each requeues.
    fn check(changes: &[(Pod, bool, usize)], expected: &[&[&str]]) {
        let services = [service("a", "a"), service("b", "b"), service("all", "a")];
        let mut memberships = PodMemberships::default();
        let got: Vec<Vec<String>> = changes
            .iter()
            .map(|(pod, present, existing)| {
                let services = &services[..*existing];
                memberships.services_to_sync(pod, services, *present).into_iter().collect()
            })
            .collect();
        let expected: Vec<Vec<String>> =
            expected.iter().map(|names| names.iter().map(|n| n.to_string()).collect()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn pod_changes_requeue_old_and_new_services() {
        let a = pod(json!({"app": "a"}), "True");
        let b = pod(json!({"app": "b"}), "True");
        let a_unready = pod(json!({"app": "a"}), "False");
        let mut a_annotated = a.clone();
        a_annotated.metadata.annotations = Some([("x".into(), "y".into())].into());
        check(
            &[
                (a.clone(), true, 3),   // first seen
                (a_annotated, true, 3), // nothing that matters changed
                (a_unready, true, 3),   // readiness changed
                (b.clone(), true, 3),   // relabelled: old and new Services
                (b, false, 3),          // deleted
                (a.clone(), true, 3),   // seen again after its deletion
            ],
            &[&["a", "all"], &[], &["a", "all"], &["a", "all", "b"], &["b"], &["a", "all"]],
        );
        // A pod a list brought is remembered: its relabelling requeues its old Services.
        let services = [service("a", "a"), service("b", "b"), service("all", "a")];
        let mut memberships = PodMemberships::default();
        memberships.remember(&a);
        let names =
            memberships.services_to_sync(&pod(json!({"app": "b"}), "True"), &services, true);
        assert_eq!(names, BTreeSet::from(["a".into(), "all".into(), "b".into()]));
        // Services created after the pod was last seen still count for its old labels.
        check(
            &[(a, true, 0), (pod(json!({"app": "b"}), "True"), true, 3)],
            &[&[], &["a", "all", "b"]],
        );
    }
}
