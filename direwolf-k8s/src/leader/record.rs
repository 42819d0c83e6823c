//! The leader record in a Lease's spec, as client-go's leader election keeps it: who holds the
//! Lease, since when, for how long a renewal is valid, and how often the holder changed. Pure
//! functions only; [`super::attempt`] reads and writes them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// The holder named in `spec`, if any: an absent or empty `holderIdentity` means the Lease is
/// free (released or never held).
pub(crate) fn holder(spec: Option<&LeaseSpec>) -> Option<&str> {
    spec.and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// How long after its last change (as its observer saw it) the record in `spec` stays valid:
/// its own `leaseDurationSeconds` (the holder's promise), else `fallback`.
pub(crate) fn validity(spec: Option<&LeaseSpec>, fallback: Duration) -> Duration {
    spec.and_then(|s| s.lease_duration_seconds)
        .and_then(|secs| u64::try_from(secs).ok())
        .map_or(fallback, Duration::from_secs)
}

/// The record `identity` writes to hold the Lease now, given the record it read (`old`).
///
/// As client-go: a holder renewing its own record keeps `acquireTime` and `leaseTransitions`
/// and advances `renewTime`; a new holder sets `acquireTime` to now and counts one more
/// transition (a Lease created from nothing starts at 0 transitions).
pub(crate) fn claimed(
    old: Option<&LeaseSpec>,
    identity: &str,
    duration_secs: i32,
    now: Timestamp,
) -> LeaseSpec {
    let renewing = holder(old) == Some(identity);
    let (acquire_time, transitions) = match old {
        Some(old) if renewing => (
            old.acquire_time.clone().unwrap_or(MicroTime(now)),
            old.lease_transitions.unwrap_or(0),
        ),
        Some(old) => (
            MicroTime(now),
            old.lease_transitions.unwrap_or(0).saturating_add(1),
        ),
        None => (MicroTime(now), 0),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration_secs),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        // Coordinated leader election fields belong to the API server's own elections.
        preferred_holder: old.and_then(|o| o.preferred_holder.clone()),
        strategy: old.and_then(|o| o.strategy.clone()),
    }
}

/// The record a holder writes when it lets go: no holder, so any candidate may take the Lease
/// at once; a 1 s validity for candidates that still go by time (client-go writes the same);
/// the transition count kept (the next holder adds one).
pub(crate) fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.lease_transitions,
        preferred_holder: old.preferred_holder.clone(),
        strategy: old.strategy.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("a valid timestamp")
    }

    fn held_by(who: &str, acquired: i64, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(acquired))),
            renew_time: Some(MicroTime(at(acquired + 5))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_new_lease_starts_at_zero_transitions() {
        let spec = claimed(None, "a", 15, at(100));
        assert_eq!(holder(Some(&spec)), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let spec = claimed(Some(&held_by("a", 10, 3)), "a", 15, at(100));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(10))));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
    }

    #[test]
    fn taking_over_counts_a_transition() {
        let spec = claimed(Some(&held_by("a", 10, 3)), "b", 15, at(100));
        assert_eq!(holder(Some(&spec)), Some("b"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn a_released_lease_is_free_and_keeps_its_count() {
        let spec = released(&held_by("a", 10, 3), at(100));
        assert_eq!(holder(Some(&spec)), None);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(
            validity(Some(&spec), Duration::from_secs(15)),
            Duration::from_secs(1)
        );
        let next = claimed(Some(&spec), "b", 15, at(101));
        assert_eq!(next.lease_transitions, Some(4));
    }

    #[test]
    fn validity_falls_back_when_unset_or_negative() {
        let fallback = Duration::from_secs(7);
        assert_eq!(validity(None, fallback), fallback);
        let negative = LeaseSpec {
            lease_duration_seconds: Some(-1),
            ..LeaseSpec::default()
        };
        assert_eq!(validity(Some(&negative), fallback), fallback);
        assert_eq!(
            validity(Some(&held_by("a", 0, 0)), fallback),
            Duration::from_secs(15)
        );
    }
}
