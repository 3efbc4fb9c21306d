//! The Job, CronJob and TTL-after-finished controllers end to end, with the real kubectl and
//! hollow nodes whose pods succeed a second after they run: a Job of 3 completions, 2 at a
//! time; an Indexed Job; a suspended Job that starts only once resumed; a Job deleted when
//! its TTL runs out; and a CronJob firing every minute whose Job completes. Everything runs
//! at once, so the whole takes about as long as the wait for the CronJob's first minute.

mod support;

use anyhow::{Context, Result, bail, ensure};
use std::time::{Duration, Instant};
use support::Cluster;

const NAMESPACE: &str = "jobs";

/// A pod template whose containers the hollow nodes "run" for a second.
const POD: &str = "
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox";

fn job(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n{spec}\n  template:{POD}\n---\n"
    )
}

#[test]
fn jobs_and_cron_jobs_run_to_completion() -> Result<()> {
    let started = Instant::now();
    let c = Cluster::start(false)?;
    let _nodes = c.sim_nodes(&["--count", "2", "--succeed-after", "1s"])?;
    c.ok(&["create", "namespace", NAMESPACE])?;
    // The CronJob first: its first run, at the next minute, is the longest wait.
    let cron_job = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\n  namespace: {NAMESPACE}\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:{}\n",
        POD.replace("\n    ", "\n        ")
    );
    c.ok(&["apply", "-f", &c.manifest("cronjob.yaml", &cron_job)?])?;
    let jobs = [
        job("x", "  completions: 3\n  parallelism: 2"),
        job("idx", "  completions: 3\n  parallelism: 3\n  completionMode: Indexed"),
        job("sus", "  completions: 1\n  suspend: true"),
        job("ttl", "  ttlSecondsAfterFinished: 0"),
    ]
    .concat();
    c.ok(&["apply", "-f", &c.manifest("jobs.yaml", &jobs)?])?;

    // Three completions, two at a time: Complete, with exactly three pods ever created.
    wait_complete(&c, "x")?;
    ensure!(get(&c, &["job", "x"], "{.status.succeeded}")? == "3");
    let conditions = get(&c, &["job", "x"], "{.status.conditions[*].type}")?;
    ensure!(conditions == "SuccessCriteriaMet Complete", "conditions of x: {conditions}");
    let reason = get(&c, &["job", "x"], "{.status.conditions[1].reason}")?;
    ensure!(reason == "CompletionsReached", "reason: {reason}");
    ensure!(!get(&c, &["job", "x"], "{.status.completionTime}")?.is_empty());
    let pods = pods_of(&c, "x")?;
    ensure!(pods.len() == 3, "pods of x: {pods:?}");
    let finalizers = get(&c, &["pods", "-l", "job-name=x"], "{.items[*].metadata.finalizers}")?;
    ensure!(!finalizers.contains("job-tracking"), "tracking finalizers left: {finalizers}");

    // Indexed: each index once, with its label and host name.
    wait_complete(&c, "idx")?;
    ensure!(get(&c, &["job", "idx"], "{.status.completedIndexes}")? == "0-2");
    let indexes = get(
        &c,
        &["pods", "-l", "job-name=idx"],
        "{.items[*].metadata.labels.batch\\.kubernetes\\.io/job-completion-index}",
    )?;
    let mut indexes: Vec<&str> = indexes.split_whitespace().collect();
    indexes.sort_unstable();
    ensure!(indexes == ["0", "1", "2"], "indexes: {indexes:?}");
    let hostnames = get(&c, &["pods", "-l", "job-name=idx"], "{.items[*].spec.hostname}")?;
    ensure!(hostnames.contains("idx-1"), "host names: {hostnames}");

    // Suspended: no pods, a Suspended condition; resumed, it runs.
    ensure!(pods_of(&c, "sus")?.is_empty(), "a suspended job created pods");
    c.wait_for_field(
        &["job", "sus", "-n", NAMESPACE],
        "{.status.conditions[0].reason}",
        "JobSuspended",
    )?;
    ensure!(pods_of(&c, "sus")?.is_empty(), "a suspended job created pods");
    c.ok(&[
        "patch",
        "job",
        "sus",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])?;
    wait_complete(&c, "sus")?;
    let suspended =
        get(&c, &["job", "sus"], "{.status.conditions[?(@.type==\"Suspended\")].status}")?;
    ensure!(suspended == "False", "Suspended condition after resuming: {suspended}");

    // A TTL of zero: the Job goes as soon as it finished.
    c.ok(&["wait", "--for=delete", "job/ttl", "-n", NAMESPACE, "--timeout=30s"])?;

    let reasons = get(&c, &["events"], "{.items[*].reason}")?;
    for reason in ["SuccessfulCreate", "Completed", "Suspended", "Resumed"] {
        ensure!(reasons.split_whitespace().any(|r| r == reason), "no {reason} event in {reasons}");
    }

    // The CronJob's first run: a Job named after its minute, which completes.
    let deadline = started + Duration::from_secs(80);
    let spawned = loop {
        let names = get(&c, &["jobs"], "{.items[*].metadata.name}")?;
        if let Some(name) = names.split_whitespace().find(|n| n.starts_with("tick-")) {
            break name.to_owned();
        }
        if Instant::now() > deadline {
            bail!("the cronjob created no job in time; jobs: {names}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let minute: i64 = spawned.trim_start_matches("tick-").parse().context("job name")?;
    let scheduled = get(&c, &["cronjob", "tick"], "{.status.lastScheduleTime}")?;
    ensure!(!scheduled.is_empty(), "no lastScheduleTime");
    wait_complete(&c, &spawned)?;
    let owner = get(&c, &["job", &spawned], "{.metadata.ownerReferences[0].name}")?;
    ensure!(owner == "tick", "owner of {spawned}: {owner}");
    let annotation = get(
        &c,
        &["job", &spawned],
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    )?;
    ensure!(annotation == scheduled, "scheduled {scheduled}, annotated {annotation}");
    ensure!(minute > 29_000_000, "the job name carries minutes since the epoch: {spawned}");
    // The CronJob notices the Job finished.
    c.wait_for_field(&["cronjob", "tick", "-n", NAMESPACE], "{.status.active}", "")?;
    let successful = wait_nonempty(&c, &["cronjob", "tick"], "{.status.lastSuccessfulTime}")?;
    ensure!(successful >= scheduled, "last success {successful} before the run {scheduled}");
    let reasons = get(&c, &["events"], "{.items[*].reason}")?;
    ensure!(reasons.contains("SawCompletedJob"), "no SawCompletedJob event in {reasons}");
    c.stop()
}

/// `kubectl get <what> -n jobs -o jsonpath=<path>`.
fn get(c: &Cluster, what: &[&str], path: &str) -> Result<String> {
    let jsonpath = format!("jsonpath={path}");
    c.ok(&[&["get"][..], what, &["-n", NAMESPACE, "-o", &jsonpath]].concat())
}

fn pods_of(c: &Cluster, job: &str) -> Result<Vec<String>> {
    let selector = format!("job-name={job}");
    let names = get(c, &["pods", "-l", &selector], "{.items[*].metadata.name}")?;
    Ok(names.split_whitespace().map(String::from).collect())
}

fn wait_complete(c: &Cluster, job: &str) -> Result<()> {
    let target = format!("job/{job}");
    c.ok(&["wait", "--for=condition=complete", &target, "-n", NAMESPACE, "--timeout=60s"])?;
    Ok(())
}

/// Polls a field until it is set (30 s at most).
fn wait_nonempty(c: &Cluster, what: &[&str], path: &str) -> Result<String> {
    for _ in 0..300 {
        let value = get(c, what, path)?;
        if !value.is_empty() {
            return Ok(value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what:?} {path} stayed empty")
}
