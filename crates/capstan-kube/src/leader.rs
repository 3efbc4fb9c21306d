//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's leaderelection
//! semantics, so that of several processes running the same component exactly one acts.
//!
//! A candidate reads the Lease every retry period and writes itself in as holder when the Lease
//! is missing, free, already its own, or held by another whose record has not changed for the
//! record's lease duration. That duration is measured on the candidate's own clock from the
//! moment it first saw the record in its current form, never by comparing the record's
//! timestamps with the local clock: the processes' clocks need not agree, only tick at about
//! the same rate. Every write is a compare-and-swap (a replace carrying the resourceVersion
//! read), so of two candidates racing for the same Lease one gets a 409 and stays a candidate.
//!
//! The leader renews every retry period. Its term ends, and the component it runs is told so,
//! once `renew_deadline` has passed since the start of its last successful write, whatever the
//! reason (errors, a slow API, or the process being frozen), and at once on a 409. Since a
//! write completes after it was started and every other candidate waits `lease_duration` after
//! seeing it, a leader that stops within `renew_deadline` (shorter than `lease_duration`)
//! stops before anyone else can start, provided the clocks run at about the same rate.
//!
//! Candidates sleep exactly until a lease they wait for runs out when that comes before the
//! next retry, so a frozen leader is replaced at most `lease_duration + retry_period` after its
//! last renewal. Upstream adds jitter to the candidates' period; here the compare-and-swap is
//! enough to settle contention, and the bound stays exact.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Which Lease to compete for, as whom, and the timing (client-go's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// The Lease's namespace (`kube-system` for the control plane's components).
    pub namespace: String,
    /// The Lease's name (`kube-scheduler`, `kube-controller-manager`).
    pub name: String,
    /// Who this process is in `holderIdentity`; unique among the candidates.
    pub identity: String,
    /// How long other candidates wait, after the record last changed, before taking over.
    pub lease_duration: Duration,
    /// How long after its last successful renewal the leader gives up its term.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// The Lease `kube-system/<name>` with upstream's timing (15 s, 10 s, 2 s) and a fresh
    /// identity from [`unique_identity`].
    pub fn new(name: impl Into<String>) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: unique_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// `namespace/name`, for logs.
    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `<hostname>_<random UUID>`, as upstream's components name themselves: the host says where
/// the leader runs, the suffix keeps two processes on one host (or one process's successive
/// runs) apart.
pub fn unique_identity() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{hostname}_{}", random_uuid())
}

/// A version 4 UUID in its usual text form.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    bytes.iter_mut().for_each(|byte| *byte = fastrand::u8(..));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Completes when a term of leadership ends: the Lease could not be renewed in time, someone
/// else wrote it, or the elector is shutting down. What runs under the term must stop then.
pub struct Lost(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Lost {
    /// Ends when `term` holds `None` or the deadline it holds passes; the leader moves the
    /// deadline forward with each renewal.
    fn new(term: watch::Receiver<Option<Instant>>) -> Lost {
        Lost(Box::pin(term_ends(term)))
    }
}

impl fmt::Debug for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lost").finish_non_exhaustive()
    }
}

impl Future for Lost {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

async fn term_ends(mut term: watch::Receiver<Option<Instant>>) {
    loop {
        let Some(deadline) = *term.borrow_and_update() else { return };
        // Checked before waiting, and again after every wake-up: after the process was frozen
        // the deadline may long have passed, and the term must end on the first poll.
        if Instant::now() >= deadline {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            changed = term.changed() => {
                // The elector dropped its end: there is no term any more.
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `lead` whenever this process holds the Lease `config` names, until `until` completes.
///
/// `lead` receives a [`Lost`] future and must return soon after it completes; it is called
/// again for each new term, so it must build its state afresh. The next term starts only once
/// the previous call returned. When `until` completes the current term ends, and once `lead`
/// returned the Lease is released (its holder cleared) so that another candidate need not
/// wait for it to run out. If `lead` returns while the term still runs, the Lease is
/// released too and this process competes again.
pub async fn run_as_leader<F, Fut>(
    client: kube::Client,
    config: LeaderElectionConfig,
    until: impl Future<Output = ()>,
    mut lead: F,
) where
    F: FnMut(Lost) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut elector = Elector::new(client, config);
    let mut until = pin!(until);
    let lease = elector.config.lease();
    let identity = elector.config.identity.clone();
    tracing::info!(%lease, %identity, "attempting to acquire lease");
    loop {
        let held = tokio::select! {
            () = &mut until => break,
            held = elector.acquire() => held,
        };
        tracing::info!(%lease, %identity, "acquired lease");
        let end = {
            let deadline = held.renewed_at + elector.config.renew_deadline;
            let (term, term_ends) = watch::channel(Some(deadline));
            let mut leading = pin!(lead(Lost::new(term_ends)));
            let mut renewing = pin!(elector.keep_renewing(held, &term));
            let mut end = TermEnd::Returned;
            let mut renewals_failed = false;
            loop {
                tokio::select! {
                    () = &mut leading => {
                        // The term may have run out on `lead`'s side first (its `Lost` has a
                        // timer of its own), before the renewals noticed: a loss all the same.
                        let now = Instant::now();
                        let expired = term.borrow().is_none_or(|deadline| now >= deadline);
                        if end == TermEnd::Returned && expired {
                            end = TermEnd::Lost;
                            let reason = Loss::DeadlinePassed;
                            tracing::info!(%lease, %identity, %reason, "lost lease");
                        }
                        break;
                    }
                    loss = &mut renewing, if !renewals_failed => {
                        renewals_failed = true;
                        if end == TermEnd::Returned {
                            end = TermEnd::Lost;
                        }
                        term.send_replace(None);
                        tracing::info!(%lease, %identity, reason = %loss, "lost lease");
                    }
                    // The term ends, but renewals go on until `lead` has returned, so that
                    // nobody else starts while it winds down; then the Lease is released.
                    () = &mut until, if end != TermEnd::Stopping => {
                        end = TermEnd::Stopping;
                        term.send_replace(None);
                    }
                }
            }
            end
        };
        match end {
            TermEnd::Stopping => break,
            TermEnd::Lost => {}
            TermEnd::Returned => {
                tracing::warn!(
                    %lease,
                    %identity,
                    "the component stopped by itself while leading; releasing the lease"
                );
                elector.release().await;
                tokio::select! {
                    () = &mut until => return,
                    () = tokio::time::sleep(elector.config.retry_period) => {}
                }
            }
        }
    }
    // Also after a shutdown while a candidate: a write of ours may have gone through just as
    // `until` cut the attempt short. Release reads first and writes only a Lease we hold.
    elector.release().await;
}

/// How a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TermEnd {
    /// `lead` returned while the term still ran.
    Returned,
    /// The Lease could not be renewed in time (this process competes again).
    Lost,
    /// `until` completed (this process releases the Lease and returns).
    Stopping,
}

/// The Lease as this process last wrote it, and when that write started.
#[derive(Debug)]
struct Held {
    lease: Lease,
    renewed_at: Instant,
}

/// The Lease record a candidate last saw, and when (on its own clock) the record took that form.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    spec: LeaseSpec,
    since: Instant,
}

/// What one attempt to acquire found.
#[derive(Debug)]
enum Attempt {
    /// This process holds the Lease.
    Acquired(Box<Held>),
    /// Another holder's lease protects it until then.
    HeldUntil(Instant),
    /// An error, or another candidate won a race: try again after the retry period.
    Retry,
}

/// Why a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// The renew deadline passed before another attempt could start (the process was frozen
    /// or starved, or every attempt failed).
    DeadlinePassed,
    /// The renewal was still unanswered at the deadline.
    TimedOut,
    /// The renewal succeeded only after the deadline: someone may have taken over meanwhile.
    AnsweredTooLate,
    /// Someone else wrote the Lease (409), or deleted it (404).
    Overwritten,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::DeadlinePassed => "the renew deadline passed",
            Loss::TimedOut => "the renewal timed out",
            Loss::AnsweredTooLate => "the renewal was answered after the renew deadline",
            Loss::Overwritten => "the lease was written by someone else",
        })
    }
}

/// One process's candidacy for one Lease.
struct Elector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
}

impl Elector {
    fn new(client: kube::Client, config: LeaderElectionConfig) -> Elector {
        Elector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    /// Tries until this process holds the Lease.
    async fn acquire(&mut self) -> Held {
        loop {
            let wait = match self.try_acquire().await {
                Attempt::Acquired(held) => return *held,
                Attempt::HeldUntil(expiry) => expiry.min(Instant::now() + self.config.retry_period),
                Attempt::Retry => Instant::now() + self.config.retry_period,
            };
            tokio::time::sleep_until(wait).await;
        }
    }

    async fn try_acquire(&mut self) -> Attempt {
        let name = self.config.lease();
        let bound = self.config.renew_deadline;
        let current = match tokio::time::timeout(bound, self.api.get_opt(&self.config.name)).await {
            Ok(Ok(current)) => current,
            Ok(Err(error)) => {
                tracing::debug!(lease = %name, %error, "cannot read the lease; retrying");
                return Attempt::Retry;
            }
            Err(_) => {
                tracing::debug!(lease = %name, "reading the lease timed out; retrying");
                return Attempt::Retry;
            }
        };
        // Read after the answer arrived: any write the answer reflects happened before now,
        // so the wait measured from here is never shorter than the holder's term.
        let now = Instant::now();
        let started = now;
        let write = match current {
            None => {
                let spec = taken_spec(None, &self.config, Timestamp::now());
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                tokio::time::timeout(bound, self.api.create(&PostParams::default(), &lease)).await
            }
            Some(mut current) => {
                let spec = current.spec.take().unwrap_or_default();
                let observed = observe(self.observed.take(), spec, now);
                let identity = self.config.identity.as_str();
                if !may_acquire(&observed.spec, identity, observed.since, now) {
                    let holder = observed.spec.holder_identity.clone().unwrap_or_default();
                    let expiry = held_until(&observed.spec, identity, observed.since);
                    self.observed = Some(observed);
                    tracing::debug!(lease = %name, %holder, "the lease is held by another");
                    return Attempt::HeldUntil(expiry.unwrap_or(now));
                }
                let taken = taken_spec(Some(&observed.spec), &self.config, Timestamp::now());
                self.observed = Some(observed);
                // `current` keeps the resourceVersion read: if anyone wrote since, this fails.
                current.spec = Some(taken);
                tokio::time::timeout(
                    bound,
                    self.api.replace(&self.config.name, &PostParams::default(), &current),
                )
                .await
            }
        };
        let finished = Instant::now();
        match write {
            Ok(Ok(written)) if finished < started + self.config.renew_deadline => {
                self.remember(&written, finished);
                Attempt::Acquired(Box::new(Held { lease: written, renewed_at: started }))
            }
            Ok(Ok(_)) => {
                // Written, but too late to count on it; the next attempt finds the Lease ours
                // and takes it back at once if nobody else did.
                tracing::debug!(lease = %name, "the lease was taken too late to count; retrying");
                Attempt::Retry
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                tracing::debug!(lease = %name, "another candidate wrote the lease first; retrying");
                Attempt::Retry
            }
            Ok(Err(error)) => {
                tracing::debug!(lease = %name, %error, "cannot write the lease; retrying");
                Attempt::Retry
            }
            Err(_) => {
                tracing::debug!(lease = %name, "writing the lease timed out; retrying");
                Attempt::Retry
            }
        }
    }

    /// Renews every retry period; returns when leadership is lost. Each success moves the
    /// deadline in `term` forward, unless the term was ended.
    async fn keep_renewing(&self, held: Held, term: &watch::Sender<Option<Instant>>) -> Loss {
        let lease = self.config.lease();
        let Held { lease: mut current, mut renewed_at } = held;
        let mut next = renewed_at + self.config.retry_period;
        loop {
            tokio::time::sleep_until(next).await;
            let deadline = renewed_at + self.config.renew_deadline;
            let started = Instant::now();
            next = started + self.config.retry_period;
            if started >= deadline {
                return Loss::DeadlinePassed;
            }
            let mut renewed = current.clone();
            renewed.spec =
                Some(renewed_spec(current.spec.as_ref(), &self.config, Timestamp::now()));
            let params = PostParams::default();
            let write = self.api.replace(&self.config.name, &params, &renewed);
            let outcome = tokio::time::timeout(deadline - started, write).await;
            let finished = Instant::now();
            match outcome {
                Err(_) => return Loss::TimedOut,
                // A success that arrives late counts for nothing: after a freeze the answer can
                // be ready before the timer is looked at.
                Ok(Ok(_)) if finished >= deadline => return Loss::AnsweredTooLate,
                Ok(Ok(written)) => {
                    current = written;
                    renewed_at = started;
                    // A term already ended stays ended: renewals after it only keep others
                    // out while the component stops.
                    let extended = renewed_at + self.config.renew_deadline;
                    term.send_if_modified(|deadline| match deadline {
                        Some(deadline) => {
                            *deadline = extended;
                            true
                        }
                        None => false,
                    });
                    tracing::trace!(%lease, "renewed lease");
                }
                Ok(Err(kube::Error::Api(status))) if status.code == 409 || status.code == 404 => {
                    return Loss::Overwritten;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%lease, %error, "cannot renew the lease; retrying");
                }
            }
        }
    }

    /// Clears the holder of the Lease if it is this process, so another candidate can take it
    /// at once. Bounded by the retry period: a shutdown must not hang on an unreachable API.
    async fn release(&mut self) {
        let lease = self.config.lease();
        let attempt = async {
            let mut current = match self.api.get_opt(&self.config.name).await? {
                Some(current) => current,
                None => return Ok(false),
            };
            let holder = current.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref());
            if holder != Some(self.config.identity.as_str()) {
                return Ok(false);
            }
            current.spec = Some(released_spec(current.spec.as_ref(), Timestamp::now()));
            self.api.replace(&self.config.name, &PostParams::default(), &current).await?;
            Ok::<_, kube::Error>(true)
        };
        match tokio::time::timeout(self.config.retry_period, attempt).await {
            Ok(Ok(true)) => {
                tracing::info!(%lease, identity = %self.config.identity, "released lease");
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::debug!(%lease, %error, "cannot release the lease"),
            Err(_) => tracing::debug!(%lease, "releasing the lease timed out"),
        }
        self.observed = None;
    }

    /// Remembers our own write as the record last seen, as client-go does.
    fn remember(&mut self, written: &Lease, at: Instant) {
        self.observed =
            Some(Observed { spec: written.spec.clone().unwrap_or_default(), since: at });
    }
}

/// The record as now observed: the previous observation if the record has not changed since
/// (so its time keeps counting), otherwise the new record, seen at `now`.
fn observe(previous: Option<Observed>, spec: LeaseSpec, now: Instant) -> Observed {
    match previous {
        Some(previous) if previous.spec == spec => previous,
        _ => Observed { spec, since: now },
    }
}

/// Until when the record protects its holder from `identity`, counting its lease duration from
/// `observed_since`. `None` when `identity` may take the Lease regardless of time: nobody holds
/// it, or `identity` itself does. A missing or non-positive duration protects nobody, as
/// upstream.
fn held_until(spec: &LeaseSpec, identity: &str, observed_since: Instant) -> Option<Instant> {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return None;
    }
    let seconds = spec.lease_duration_seconds.unwrap_or(0).max(0);
    Some(observed_since + Duration::from_secs(u64::from(seconds.unsigned_abs())))
}

/// Whether `identity` may write itself into the Lease at `now`.
fn may_acquire(spec: &LeaseSpec, identity: &str, observed_since: Instant, now: Instant) -> bool {
    held_until(spec, identity, observed_since).is_none_or(|expiry| now >= expiry)
}

/// The record of a Lease taken (or created, from `None`) by `config.identity` at `now`: a new
/// holder (even of a released Lease) starts a new term and counts a transition; the holder
/// itself keeps both.
fn taken_spec(
    current: Option<&LeaseSpec>,
    config: &LeaderElectionConfig,
    now: Timestamp,
) -> LeaseSpec {
    let (current, increment) = match current {
        Some(current) => {
            let ours = current.holder_identity.as_deref() == Some(config.identity.as_str());
            (current.clone(), if ours { 0 } else { 1 })
        }
        None => (LeaseSpec::default(), 0),
    };
    let acquire_time = match &current.acquire_time {
        Some(time) if increment == 0 => time.clone(),
        _ => MicroTime(now),
    };
    let lease_transitions = current.lease_transitions.unwrap_or(0).saturating_add(increment);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds(config.lease_duration)),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(lease_transitions),
        ..current
    }
}

/// The record of the holder's renewal at `now`.
fn renewed_spec(
    current: Option<&LeaseSpec>,
    config: &LeaderElectionConfig,
    now: Timestamp,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds(config.lease_duration)),
        renew_time: Some(MicroTime(now)),
        ..current.cloned().unwrap_or_default()
    }
}

/// The record of a Lease given up at `now`: no holder, and (as upstream) a one-second
/// duration, the shortest valid one.
fn released_spec(current: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..current.cloned().unwrap_or_default()
    }
}

/// Whole seconds, at least one (the API refuses a zero duration) and at most `i32::MAX`.
fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "host_me";

    fn spec(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: duration,
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    /// `observed` and `now` are seconds after one fixed instant.
    fn check(record: LeaseSpec, observed: u64, now: u64, expected: bool) {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            may_acquire(&record, ME, at(observed), at(now)),
            expected,
            "record {record:?} observed at {observed} s, now {now} s"
        );
    }

    #[test]
    fn may_acquire_only_a_free_own_or_expired_lease() {
        // Held by another: protected for its duration after we first saw the record.
        check(spec(Some("other"), Some(15)), 0, 0, false);
        check(spec(Some("other"), Some(15)), 0, 14, false);
        check(spec(Some("other"), Some(15)), 0, 15, true);
        check(spec(Some("other"), Some(15)), 0, 40, true);
        check(spec(Some("other"), Some(15)), 10, 24, false);
        check(spec(Some("other"), Some(15)), 10, 25, true);
        // The record's own duration counts, not ours.
        check(spec(Some("other"), Some(60)), 0, 59, false);
        check(spec(Some("other"), Some(1)), 0, 1, true);
        // No duration, or a nonsensical one, protects nobody (upstream reads it as zero).
        check(spec(Some("other"), None), 5, 5, true);
        check(spec(Some("other"), Some(-3)), 5, 5, true);
        // Free: never held, or released.
        check(spec(None, Some(15)), 0, 0, true);
        check(spec(Some(""), Some(1)), 0, 0, true);
        check(LeaseSpec::default(), 0, 0, true);
        // Already ours (a previous term of this process): take it back at once.
        check(spec(Some(ME), Some(15)), 0, 0, true);
    }

    #[test]
    fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(7);
        let first = observe(None, spec(Some("other"), Some(15)), t0);
        assert_eq!(first.since, t0);
        // The same record read again: the lease keeps running out from the first sight.
        let same = observe(Some(first.clone()), spec(Some("other"), Some(15)), later);
        assert_eq!(same.since, t0);
        // A renewal (any change of the record) starts the count again.
        let mut renewed = spec(Some("other"), Some(15));
        renewed.renew_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        let changed = observe(Some(first), renewed.clone(), later);
        assert_eq!(changed, Observed { spec: renewed, since: later });
    }

    fn config() -> LeaderElectionConfig {
        LeaderElectionConfig { identity: ME.into(), ..LeaderElectionConfig::new("kube-scheduler") }
    }

    #[test]
    fn records_written_count_transitions_and_keep_terms() {
        let now = Timestamp::UNIX_EPOCH;
        let then = MicroTime(Timestamp::from_second(100).unwrap_or(now));
        let created = taken_spec(None, &config(), now);
        assert_eq!(created.holder_identity.as_deref(), Some(ME));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.lease_duration_seconds, Some(15));

        // Taken over from another holder: one more transition, a new acquire time.
        let other = LeaseSpec { acquire_time: Some(then.clone()), ..spec(Some("other"), Some(60)) };
        let taken = taken_spec(Some(&other), &config(), now);
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.renew_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        // Taken back by its own holder: the same term.
        let ours = LeaseSpec { acquire_time: Some(then.clone()), ..spec(Some(ME), Some(15)) };
        let back = taken_spec(Some(&ours), &config(), now);
        assert_eq!((back.lease_transitions, back.acquire_time), (Some(3), Some(then.clone())));

        // A renewal moves only the renew time.
        let renewed = renewed_spec(Some(&ours), &config(), now);
        assert_eq!(renewed, LeaseSpec { renew_time: Some(MicroTime(now)), ..ours.clone() });

        // Released: no holder; whoever takes it next counts a transition.
        let released = released_spec(Some(&ours), now);
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_transitions, Some(3));
        let next = LeaderElectionConfig { identity: "next".into(), ..config() };
        assert_eq!(taken_spec(Some(&released), &next, now).lease_transitions, Some(4));
    }

    #[test]
    fn identities_are_host_and_uuid() {
        let identity = unique_identity();
        let (host, uuid) = identity.rsplit_once('_').unwrap_or_default();
        assert!(!host.is_empty(), "{identity}");
        assert_eq!(uuid.len(), 36, "{identity}");
        assert_eq!(uuid.matches('-').count(), 4, "{identity}");
        assert_eq!(&uuid[14..15], "4", "{identity}");
        assert_ne!(identity, unique_identity());
    }

    /// The term ends by itself at its deadline, moves with each renewal, and ends at once
    /// when the elector says so.
    #[tokio::test(start_paused = true)]
    async fn lost_follows_the_deadline() {
        let start = Instant::now();
        let (term, receiver) = watch::channel(Some(start + Duration::from_secs(10)));
        let lost = Lost::new(receiver);
        let renew = async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            term.send_replace(Some(Instant::now() + Duration::from_secs(10)));
        };
        tokio::join!(lost, renew);
        assert_eq!(Instant::now() - start, Duration::from_secs(18));

        let (term, receiver) = watch::channel(Some(Instant::now() + Duration::from_secs(10)));
        let before = Instant::now();
        let end = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            term.send_replace(None);
        };
        tokio::join!(Lost::new(receiver), end);
        assert_eq!(Instant::now() - before, Duration::from_secs(1));
    }
}
