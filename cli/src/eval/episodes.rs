//! N-way K-shot episodes: N classes drawn from a split, K support and Q query images drawn
//! from each, support and query disjoint. Episode e of a run with seed s draws everything from
//! its own random stream keyed by (s, e), so results repeat exactly and episodes can run in
//! any order, in parallel.
use rand::seq::index::sample;

use super::error::{EvalError, Result};
use crate::data::rng::{stream, Purpose};

/// N, K and Q.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpisodeShape {
    pub ways: usize,
    pub shots: usize,
    pub queries: usize,
}

/// One episode: example indices and their episode labels (0..ways, in the order the classes
/// were drawn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub support: Vec<usize>,
    pub support_labels: Vec<usize>,
    pub query: Vec<usize>,
    pub query_labels: Vec<usize>,
}

impl EpisodeShape {
    /// Whether every class of `by_class` (example indices per class) can fill an episode.
    pub fn check(&self, by_class: &[Vec<usize>], class_names: &[String]) -> Result<()> {
        if self.ways < 2 || self.shots == 0 || self.queries == 0 {
            return Err(EvalError::Invalid(format!(
                "an episode needs at least 2 ways, 1 shot and 1 query per class \
                 (got {} ways, {} shots, {} queries)",
                self.ways, self.shots, self.queries
            )));
        }
        if by_class.len() < self.ways {
            return Err(EvalError::Invalid(format!(
                "{}-way episodes need {} classes; the split has {}",
                self.ways,
                self.ways,
                by_class.len()
            )));
        }
        let needed = self.shots + self.queries;
        if let Some((c, examples)) = by_class.iter().enumerate().find(|(_, e)| e.len() < needed) {
            return Err(EvalError::Invalid(format!(
                "class {} has {} images; {} shots + {} queries need {needed}",
                class_names
                    .get(c)
                    .map_or(c.to_string(), |n| format!("{c} ({n})")),
                examples.len(),
                self.shots,
                self.queries
            )));
        }
        Ok(())
    }

    /// Episode `index` of the run seeded by `seed`; `by_class` must have passed [`Self::check`].
    pub fn sample(&self, by_class: &[Vec<usize>], seed: u64, index: u64) -> Episode {
        let mut rng = stream(seed, Purpose::Episode, &[index]);
        let mut episode = Episode {
            support: Vec::with_capacity(self.ways * self.shots),
            support_labels: Vec::with_capacity(self.ways * self.shots),
            query: Vec::with_capacity(self.ways * self.queries),
            query_labels: Vec::with_capacity(self.ways * self.queries),
        };
        let classes = sample(&mut rng, by_class.len(), self.ways);
        for (label, class) in classes.into_iter().enumerate() {
            let examples = &by_class[class];
            // One draw without replacement, split into support and query: disjoint by design.
            let picked = sample(&mut rng, examples.len(), self.shots + self.queries);
            for (j, i) in picked.into_iter().enumerate() {
                if j < self.shots {
                    episode.support.push(examples[i]);
                    episode.support_labels.push(label);
                } else {
                    episode.query.push(examples[i]);
                    episode.query_labels.push(label);
                }
            }
        }
        episode
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// 8 classes; class c owns examples 100c .. 100c + 20 + c.
    fn classes() -> Vec<Vec<usize>> {
        (0..8)
            .map(|c| (100 * c..100 * c + 20 + c).collect())
            .collect()
    }

    const SHAPE: EpisodeShape = EpisodeShape {
        ways: 5,
        shots: 3,
        queries: 15,
    };

    #[test]
    fn episodes_have_the_right_shape_and_disjoint_sets() {
        let by_class = classes();
        for index in 0..50 {
            let e = SHAPE.sample(&by_class, 7, index);
            assert_eq!(e.support.len(), 15);
            assert_eq!(e.query.len(), 75);
            let support: HashSet<_> = e.support.iter().collect();
            let query: HashSet<_> = e.query.iter().collect();
            assert_eq!(support.len(), 15);
            assert_eq!(query.len(), 75);
            assert!(support.is_disjoint(&query));
            // Every episode label names one original class, the same in support and query.
            for label in 0..5 {
                let class_of = |i: &usize| i / 100;
                let s: HashSet<_> = e
                    .support
                    .iter()
                    .zip(&e.support_labels)
                    .filter(|(_, &l)| l == label)
                    .map(|(i, _)| class_of(i))
                    .collect();
                let q: HashSet<_> = e
                    .query
                    .iter()
                    .zip(&e.query_labels)
                    .filter(|(_, &l)| l == label)
                    .map(|(i, _)| class_of(i))
                    .collect();
                assert_eq!(s.len(), 1);
                assert_eq!(s, q);
            }
        }
    }

    #[test]
    fn episodes_repeat_by_seed_and_index_and_vary_otherwise() {
        let by_class = classes();
        let a = SHAPE.sample(&by_class, 7, 3);
        assert_eq!(a, SHAPE.sample(&by_class, 7, 3));
        assert_ne!(a, SHAPE.sample(&by_class, 7, 4));
        assert_ne!(a, SHAPE.sample(&by_class, 8, 3));
        // Over many episodes every class is drawn.
        let drawn: HashSet<usize> = (0..100)
            .flat_map(|i| SHAPE.sample(&by_class, 1, i).support)
            .map(|i| i / 100)
            .collect();
        assert_eq!(drawn.len(), 8);
    }

    #[test]
    fn impossible_episodes_are_reported() {
        let by_class = classes();
        let names: Vec<String> = (0..8).map(|c| format!("c{c}")).collect();
        assert!(SHAPE.check(&by_class, &names).is_ok());
        let too_many_ways = EpisodeShape { ways: 9, ..SHAPE };
        assert!(too_many_ways.check(&by_class, &names).is_err());
        // Class 0 has 20 images: 5 shots + 16 queries do not fit.
        let err = EpisodeShape {
            shots: 5,
            queries: 16,
            ways: 5,
        }
        .check(&by_class, &names)
        .unwrap_err()
        .to_string();
        assert!(err.contains("c0") && err.contains("20 images"), "{err}");
        let no_query = EpisodeShape {
            queries: 0,
            ..SHAPE
        };
        assert!(no_query.check(&by_class, &names).is_err());
    }
}
