//! A sync driven through every step as if each API call succeeded, from a Job and its pods
//! to the action taken, the status written and the Events recorded.

use super::*;
use serde_json::{Value, json};

const NOW: &str = "2026-01-01T00:10:00Z";

/// What one sync did.
#[derive(Debug, PartialEq)]
struct Summary {
    action: String,
    removed_finalizers: Vec<String>,
    status: Value,
    notes: Vec<String>,
}

fn job(spec: Value, status: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": []}});
    serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "d", "uid": "ju"},
        "spec": spec, "status": status}))
    .unwrap()
}

/// A pod named `name` (also its uid) in `phase`, with the tracking finalizer unless `counted`.
fn pod(name: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "uid": name, "namespace": "d",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": ["batch.kubernetes.io/job-tracking"]},
        "spec": {"containers": [], "nodeName": "n"},
        "status": {"phase": phase, "conditions": [{"type": "Ready",
            "status": if phase == "Running" { "True" } else { "False" },
            "lastTransitionTime": "2026-01-01T00:05:00Z"}]}}))
    .unwrap()
}

fn indexed(name: &str, phase: &str, index: i32) -> Pod {
    let mut pod = pod(name, phase);
    pod.metadata.annotations =
        Some([(crate::job::indexes::COMPLETION_INDEX.to_owned(), index.to_string())].into());
    pod
}

fn deleting(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(NOW.parse().unwrap()));
    pod
}

fn exited(mut pod: Pod, code: i32) -> Pod {
    let status = json!([{"name": "c", "image": "i", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]);
    pod.status.as_mut().unwrap().container_statuses = Some(serde_json::from_value(status).unwrap());
    pod
}

fn run(job: &Job, pods: &[Pod], satisfied: bool, backoff: &BackoffRecord) -> Summary {
    let going = HashSet::new();
    let facts = Facts {
        now: NOW.parse().unwrap(),
        expectations_satisfied: satisfied,
        finalizers_going: &going,
        backoff,
    };
    let mut sync = JobSync::new(job, pods.iter().collect(), facts);
    let action = sync.pod_action();
    let (summary, outcome) = match &action {
        PodAction::Nothing => ("nothing".to_owned(), Outcome::default()),
        PodAction::DeleteActive(pods) | PodAction::Remove(pods) => {
            let verb = if matches!(action, PodAction::Remove(_)) { "remove" } else { "delete" };
            let names: Vec<&str> =
                pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            (format!("{verb} {}", names.join(",")), Outcome { done: pods.len(), ready_done: ready })
        }
        PodAction::Create { count, indexes } if indexes.is_empty() => {
            (format!("create {count}"), Outcome { done: *count, ready_done: 0 })
        }
        PodAction::Create { count, indexes } => {
            (format!("create {indexes:?}"), Outcome { done: *count, ready_done: 0 })
        }
        PodAction::Backoff(wait) => (format!("backoff {}s", wait.as_secs()), Outcome::default()),
    };
    sync.pod_action_done(&action, outcome);
    let plan = sync.track();
    let removed: HashSet<String> = plan.remove_finalizers.iter().map(|f| f.uid.clone()).collect();
    sync.finalizers_removed(&removed);
    let mut notes: Vec<String> =
        sync.notes.iter().map(|n| format!("{} {}", n.reason, n.message)).collect();
    if let Some(finished) = sync.finish() {
        notes.extend(
            sync.finished_notes(&finished).iter().map(|n| format!("{} {}", n.reason, n.message)),
        );
    }
    let mut removed_finalizers: Vec<String> =
        plan.remove_finalizers.into_iter().map(|f| f.name).collect();
    removed_finalizers.sort();
    Summary {
        action: summary,
        removed_finalizers,
        status: serde_json::to_value(&sync.status).unwrap(),
        notes,
    }
}

fn check(job: Job, pods: &[Pod], expected: Summary) {
    assert_eq!(run(&job, pods, true, &BackoffRecord::default()), expected);
}

fn summary(action: &str, removed: &[&str], status: Value, notes: &[&str]) -> Summary {
    Summary {
        action: action.to_owned(),
        removed_finalizers: removed.iter().map(|s| s.to_string()).collect(),
        status,
        notes: notes.iter().map(|s| s.to_string()).collect(),
    }
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": NOW, "lastTransitionTime": NOW})
}

const STARTED: &str = "2026-01-01T00:00:00Z";

#[test]
fn non_indexed_jobs_run_parallelism_pods_until_completions_succeed() {
    let spec = json!({"completions": 3, "parallelism": 2});
    // A new Job starts two pods.
    check(
        job(spec.clone(), json!({})),
        &[],
        summary(
            "create 2",
            &[],
            json!({"active": 2, "ready": 0, "terminating": 0,
            "startTime": NOW, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    // One succeeded: it is counted (through uncounted, then its finalizer goes), and one pod
    // more starts, as two completions remain.
    check(
        job(spec.clone(), json!({"startTime": STARTED, "active": 2, "ready": 2, "terminating": 0})),
        &[pod("a", "Succeeded"), pod("b", "Running")],
        summary(
            "create 1",
            &["a"],
            json!({"active": 2, "ready": 1, "terminating": 0,
            "succeeded": 1, "startTime": STARTED, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    // Already counted pods (no finalizer) are not counted again; one completion remains and
    // one pod runs: nothing to do.
    let mut counted = pod("a", "Succeeded");
    counted.metadata.finalizers = None;
    check(
        job(
            spec.clone(),
            json!({"startTime": STARTED, "succeeded": 2, "active": 1, "ready": 1,
            "terminating": 0}),
        ),
        &[counted.clone(), pod("c", "Running")],
        summary(
            "nothing",
            &[],
            json!({"active": 1, "ready": 1, "terminating": 0,
            "succeeded": 2, "startTime": STARTED, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    // The last one succeeds: SuccessCriteriaMet, then Complete, in one sync.
    check(
        job(spec.clone(), json!({"startTime": STARTED, "succeeded": 2, "active": 1})),
        &[counted, pod("c", "Succeeded")],
        summary(
            "nothing",
            &["c"],
            json!({"ready": 0, "terminating": 0, "succeeded": 3,
            "startTime": STARTED, "completionTime": NOW, "uncountedTerminatedPods": {},
            "conditions": [
                cond("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
                cond("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
            ]}),
            &["Completed Job completed"],
        ),
    );
}

#[test]
fn without_completions_the_first_success_ends_the_job_once_others_stop() {
    let spec = json!({"parallelism": 2});
    check(
        job(spec.clone(), json!({"startTime": STARTED})),
        &[pod("a", "Succeeded"), pod("b", "Running")],
        summary(
            "nothing",
            &["a"],
            json!({"active": 1, "ready": 1, "terminating": 0,
            "succeeded": 1, "startTime": STARTED, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    let mut counted = pod("a", "Succeeded");
    counted.metadata.finalizers = None;
    let done = run(
        &job(spec, json!({"startTime": STARTED, "succeeded": 1})),
        &[counted, pod("b", "Succeeded")],
        true,
        &BackoffRecord::default(),
    );
    assert_eq!(done.status["succeeded"], 2);
    assert_eq!(done.status["conditions"][1]["type"], "Complete");
}

#[test]
fn failures_past_the_backoff_limit_fail_the_job() {
    let spec = json!({"completions": 2, "parallelism": 2, "backoffLimit": 1});
    let pods = [pod("a", "Failed"), pod("b", "Failed"), pod("c", "Running")];
    let message = "Job has reached the specified backoff limit";
    // The running pod is deleted and counted as failed; it still terminates, so only the
    // interim FailureTarget is written.
    check(
        job(spec.clone(), json!({"startTime": STARTED})),
        &pods,
        summary(
            "delete c",
            &["a", "b", "c"],
            json!({"ready": 0, "terminating": 1, "failed": 3,
            "startTime": STARTED, "uncountedTerminatedPods": {},
            "conditions": [cond("FailureTarget", "True", "BackoffLimitExceeded", message)]}),
            &[],
        ),
    );
    // Once no pod terminates, Failed follows.
    let target = cond("FailureTarget", "True", "BackoffLimitExceeded", message);
    check(
        job(spec, json!({"startTime": STARTED, "failed": 3, "conditions": [target.clone()]})),
        &[],
        summary(
            "delete ",
            &[],
            json!({"ready": 0, "terminating": 0, "failed": 3,
            "startTime": STARTED, "uncountedTerminatedPods": {},
            "conditions": [target, cond("Failed", "True", "BackoffLimitExceeded", message)]}),
            &["BackoffLimitExceeded Job has reached the specified backoff limit"],
        ),
    );
}

#[test]
fn an_exceeded_deadline_fails_the_job_and_a_near_one_requeues() {
    let message = "Job was active longer than specified deadline";
    check(
        job(json!({"activeDeadlineSeconds": 60}), json!({"startTime": STARTED})),
        &[pod("a", "Running")],
        summary(
            "delete a",
            &["a"],
            json!({"ready": 0, "terminating": 1, "failed": 1,
            "startTime": STARTED, "uncountedTerminatedPods": {},
            "conditions": [cond("FailureTarget", "True", "DeadlineExceeded", message)]}),
            &[],
        ),
    );
    let going = HashSet::new();
    let backoff = BackoffRecord::default();
    let facts = Facts {
        now: NOW.parse().unwrap(),
        expectations_satisfied: true,
        finalizers_going: &going,
        backoff: &backoff,
    };
    let fresh = job(json!({"activeDeadlineSeconds": 900}), json!({"startTime": STARTED}));
    let sync = JobSync::new(&fresh, vec![], facts);
    assert_eq!(sync.requeue_after, Some(Duration::from_secs(300)));
}

#[test]
fn suspension_removes_pods_uncounted_and_resumption_restarts_the_clock() {
    let suspended = job(
        json!({"completions": 2, "parallelism": 2, "suspend": true}),
        json!({"startTime": STARTED, "active": 2}),
    );
    check(
        suspended,
        &[pod("a", "Running"), pod("b", "Running")],
        summary(
            "remove a,b",
            &[],
            json!({"ready": 0, "terminating": 2, "startTime": STARTED,
            "uncountedTerminatedPods": {},
            "conditions": [cond("Suspended", "True", "JobSuspended", "Job suspended")]}),
            &["Suspended Job suspended"],
        ),
    );
    let created_suspended = job(json!({"suspend": true}), json!({}));
    let status = run(&created_suspended, &[], true, &BackoffRecord::default()).status;
    assert_eq!(status.get("startTime"), None, "a suspended Job does not start");
    let resumed = job(
        json!({"completions": 2, "parallelism": 2, "suspend": false}),
        json!({"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
            "message": "Job suspended"}]}),
    );
    check(
        resumed,
        &[],
        summary(
            "create 2",
            &[],
            json!({"active": 2, "ready": 0, "terminating": 0,
            "startTime": NOW, "uncountedTerminatedPods": {},
            "conditions": [cond("Suspended", "False", "JobResumed", "Job resumed")]}),
            &["Resumed Job resumed"],
        ),
    );
}

#[test]
fn indexed_jobs_fill_missing_indexes_and_list_completed_ones() {
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    check(
        job(spec.clone(), json!({})),
        &[],
        summary(
            "create [0, 1, 2]",
            &[],
            json!({"active": 3, "ready": 0, "terminating": 0,
            "startTime": NOW, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    check(
        job(spec.clone(), json!({"startTime": STARTED})),
        &[indexed("a", "Succeeded", 0), indexed("b", "Running", 1)],
        summary(
            "create [2]",
            &["a"],
            json!({"active": 2, "ready": 1, "terminating": 0,
            "succeeded": 1, "completedIndexes": "0", "startTime": STARTED,
            "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    // A repeated index keeps one pod; a pod without a valid index goes.
    check(
        job(spec.clone(), json!({"startTime": STARTED})),
        &[
            indexed("a", "Running", 0),
            indexed("b", "Running", 0),
            indexed("c", "Running", 7),
            pod("d", "Running"),
            indexed("e", "Running", 1),
            indexed("f", "Running", 2),
        ],
        summary(
            "remove c,d,a",
            &[],
            json!({"active": 3, "ready": 3, "terminating": 3,
            "startTime": STARTED, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
    let done = run(
        &job(spec, json!({"startTime": STARTED, "completedIndexes": "1", "succeeded": 1})),
        &[indexed("a", "Succeeded", 0), indexed("c", "Succeeded", 2)],
        true,
        &BackoffRecord::default(),
    );
    assert_eq!(done.status["completedIndexes"], "0-2");
    assert_eq!(done.status["succeeded"], 3);
    assert_eq!(done.status["conditions"][1]["type"], "Complete");
    assert_eq!(done.notes, ["Completed Job completed"]);
}

#[test]
fn pod_failure_policy_fails_ignores_or_counts() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
    ]});
    let spec =
        json!({"completions": 1, "parallelism": 1, "backoffLimit": 0, "podFailurePolicy": policy});
    let message =
        "Container c for pod d/a failed with exit code 42 matching FailJob rule at index 0";
    check(
        job(spec.clone(), json!({"startTime": STARTED})),
        &[exited(pod("a", "Failed"), 42)],
        summary(
            "delete ",
            &["a"],
            json!({"ready": 0, "terminating": 0, "failed": 1,
            "startTime": STARTED, "uncountedTerminatedPods": {},
            "conditions": [cond("FailureTarget", "True", "PodFailurePolicy", message),
                cond("Failed", "True", "PodFailurePolicy", message)]}),
            &[&format!("PodFailurePolicy {message}")],
        ),
    );
    // An ignored failure is not counted, even with backoffLimit 0, and is replaced.
    check(
        job(spec, json!({"startTime": STARTED})),
        &[exited(pod("a", "Failed"), 3)],
        summary(
            "create 1",
            &["a"],
            json!({"active": 1, "ready": 0, "terminating": 0,
            "startTime": STARTED, "uncountedTerminatedPods": {}}),
            &[],
        ),
    );
}

#[test]
fn unobserved_creations_and_recent_failures_hold_new_pods_back() {
    let spec = json!({"completions": 2, "parallelism": 2});
    let fresh = job(spec.clone(), json!({}));
    assert_eq!(run(&fresh, &[], false, &BackoffRecord::default()).action, "nothing");
    let mut failed = pod("a", "Failed");
    failed.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
        Some(Time("2026-01-01T00:09:57Z".parse().unwrap()));
    let summary = run(
        &job(spec, json!({"startTime": STARTED})),
        &[failed, pod("b", "Running")],
        true,
        &BackoffRecord::default(),
    );
    assert_eq!(summary.action, "backoff 7s");
    assert_eq!(summary.status["failed"], 1);
}

#[test]
fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
    let spec = json!({"completions": 1, "parallelism": 1});
    let gone = deleting(pod("a", "Running"));
    let summary = run(
        &job(spec, json!({"startTime": STARTED})),
        std::slice::from_ref(&gone),
        true,
        &BackoffRecord::default(),
    );
    assert_eq!(summary.status["failed"], 1);
    assert_eq!(summary.action, "backoff 10s");
    let strict = json!({"completions": 1, "parallelism": 1, "podReplacementPolicy": "Failed"});
    let summary =
        run(&job(strict, json!({"startTime": STARTED})), &[gone], true, &BackoffRecord::default());
    assert_eq!(summary.status.get("failed"), None);
    assert_eq!(summary.action, "nothing", "the terminating pod is not replaced yet");
    assert_eq!(summary.status["terminating"], 1);
}
