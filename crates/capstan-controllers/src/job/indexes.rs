//! Completion indexes of Indexed Jobs: the compressed interval form of
//! `status.completedIndexes` ("0-2,4"), a pod's index, and which indexes still need a pod.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The annotation (and label) carrying a pod's completion index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A set of indexes as ordered, disjoint, non-adjacent closed intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Reads `status.completedIndexes`, keeping only indexes below `completions`. Malformed
    /// parts are skipped, as upstream does, so a corrupted status never stops a Job.
    pub(crate) fn parse(text: &str, completions: i32) -> Intervals {
        let mut result: Vec<(i32, i32)> = Vec::new();
        if text.is_empty() {
            return Intervals(result);
        }
        for part in text.split(',') {
            let mut bounds = part.splitn(2, '-');
            let Some(Ok(first)) = bounds.next().map(str::parse::<i32>) else { continue };
            if first >= completions {
                break;
            }
            let last = match bounds.next().map(str::parse::<i32>) {
                None => first,
                Some(Ok(last)) => last.min(completions - 1),
                Some(Err(_)) => continue,
            };
            match result.last_mut() {
                Some(previous) if previous.1 + 1 == first => previous.1 = last,
                _ => result.push((first, last)),
            }
        }
        Intervals(result)
    }

    /// These intervals and `indexes` (in any order) together.
    pub(crate) fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Intervals {
        let mut all: Vec<(i32, i32)> = self.0.clone();
        all.extend(indexes.into_iter().map(|i| (i, i)));
        all.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(all.len());
        for (first, last) in all {
            match merged.last_mut() {
                Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        Intervals(merged)
    }

    pub(crate) fn contains(&self, index: i32) -> bool {
        let at = self.0.partition_point(|(_, last)| *last < index);
        self.0.get(at).is_some_and(|(first, _)| *first <= index)
    }

    /// How many indexes the set holds.
    pub(crate) fn total(&self) -> i32 {
        self.0.iter().map(|(first, last)| last - first + 1).sum()
    }
}

/// Upstream's form: `a-b` for three or more in a row, `a,b` for two, `a` alone.
impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (first, last)) in self.0.iter().enumerate() {
            if position > 0 {
                f.write_str(",")?;
            }
            match last - first {
                0 => write!(f, "{first}")?,
                1 => write!(f, "{first},{last}")?,
                _ => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

/// The completion index in a pod's annotations, if there is a valid one.
pub(crate) fn completion_index(annotations: Option<&BTreeMap<String, String>>) -> Option<i32> {
    annotations?.get(COMPLETION_INDEX)?.parse::<i32>().ok().filter(|index| *index >= 0)
}

/// The `count` lowest indexes below `completions` that neither succeeded nor have an active
/// pod.
pub(crate) fn first_pending(
    active: impl IntoIterator<Item = i32>,
    succeeded: &Intervals,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let taken = succeeded.with(active);
    (0..completions).filter(|index| !taken.contains(*index)).take(count).collect()
}

/// Which indexes appear more than once among `indexes`, for the removal of duplicates.
pub(crate) fn repeated(indexes: impl IntoIterator<Item = i32>) -> BTreeSet<i32> {
    let mut seen = BTreeSet::new();
    indexes.into_iter().filter(|index| !seen.insert(*index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, completions: i32, added: &[i32], expected: &str, total: i32) {
        let intervals = Intervals::parse(text, completions).with(added.iter().copied());
        assert_eq!(intervals.to_string(), expected, "{text:?} + {added:?}");
        assert_eq!(intervals.total(), total, "{text:?} + {added:?}");
    }

    #[test]
    fn intervals_parse_merge_and_print_as_upstream() {
        let cases: &[(&str, i32, &[i32], &str, i32)] = &[
            ("", 5, &[], "", 0),
            ("", 5, &[0, 1, 2, 4], "0-2,4", 4),
            ("", 5, &[1, 0], "0,1", 2),
            ("0-2", 5, &[4], "0-2,4", 4),
            ("0-2,4", 5, &[3], "0-4", 5),
            ("0,1", 5, &[2], "0-2", 3),
            ("1,3", 5, &[2], "1-3", 3),
            ("1-3", 5, &[2, 2], "1-3", 3),
            // Indexes at or past completions (after a scale down) are dropped.
            ("0-9", 4, &[], "0-3", 4),
            ("5,7", 4, &[], "", 0),
            // Garbage is skipped.
            ("x,2,3-y,4", 6, &[], "2,4", 2),
        ];
        for (text, completions, added, expected, total) in cases {
            check(text, *completions, added, expected, *total);
        }
    }

    #[test]
    fn membership() {
        let intervals = Intervals::parse("0-2,5,7-9", 10);
        let members: Vec<i32> = (0..11).filter(|i| intervals.contains(*i)).collect();
        assert_eq!(members, [0, 1, 2, 5, 7, 8, 9]);
    }

    #[test]
    fn pending_indexes_skip_succeeded_and_active_ones() {
        // (succeeded, active, how many, completions, expected)
        type Case = (&'static str, &'static [i32], usize, i32, &'static [i32]);
        let cases: &[Case] = &[
            ("", &[], 2, 3, &[0, 1]),
            ("", &[], 5, 3, &[0, 1, 2]),
            ("0-2", &[], 2, 5, &[3, 4]),
            ("1", &[0, 3], 3, 6, &[2, 4, 5]),
            ("0-4", &[], 1, 5, &[]),
            ("", &[0], 0, 5, &[]),
        ];
        for (succeeded, active, count, completions, expected) in cases {
            let succeeded = Intervals::parse(succeeded, *completions);
            let pending = first_pending(active.iter().copied(), &succeeded, *count, *completions);
            assert_eq!(pending, *expected, "{succeeded} {active:?}");
        }
    }

    #[test]
    fn completion_index_of_annotations() {
        let of = |value: &str| {
            completion_index(Some(&BTreeMap::from([(COMPLETION_INDEX.into(), value.into())])))
        };
        assert_eq!(of("3"), Some(3));
        assert_eq!(of("-1"), None);
        assert_eq!(of("x"), None);
        assert_eq!(completion_index(None), None);
        assert_eq!(repeated([1, 2, 1, 3, 3, 3]), BTreeSet::from([1, 3]));
    }
}
