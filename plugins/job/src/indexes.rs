//! Completion indexes of Indexed Jobs: the pod's index, `completedIndexes` text, pending indexes.

use std::collections::BTreeSet;

use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) holding a pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's completion index, from its annotation (else its label), if valid.
pub fn of(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let text = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))?;
    text.parse().ok().filter(|i| *i >= 0)
}

/// Parses `completedIndexes` (`1,3-5,7`); malformed parts are skipped and indexes at or beyond
/// `completions` dropped.
pub fn parse(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.parse::<i32>(), last.parse::<i32>()) {
            set.extend((first.max(0)..=last.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    set
}

/// Formats indexes as `completedIndexes`: ascending, runs of consecutive indexes as ranges.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The lowest `count` indexes below `completions` neither completed nor running.
pub fn pending(
    completed: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !completed.contains(i) && !running.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip() {
        let set = parse("0,2-4,7,x,9-8", 8);
        assert_eq!(set, BTreeSet::from([0, 2, 3, 4, 7]));
        assert_eq!(format(&set), "0,2-4,7");
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(parse("1-10", 3), BTreeSet::from([1, 2]));
        let running = BTreeSet::from([1]);
        assert_eq!(pending(&set, &running, 2, 8), vec![5, 6]);
    }
}
