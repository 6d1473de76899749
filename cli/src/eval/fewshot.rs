//! The few-shot evaluation of the paper (Table 1): for every shot setting, fit a logistic
//! regression on the support set of each episode and score it on the query set; report the
//! mean query accuracy over the episodes with its 95% confidence interval, in percent.
use rayon::prelude::*;

use super::confidence::MeanCi;
use super::embeddings::{indices_by_class, Embeddings};
use super::episodes::{Episode, EpisodeShape};
use super::error::{EvalError, Result};
use super::logreg::{LogisticRegression, Samples};

#[derive(Clone, Debug)]
pub struct FewShotConfig {
    pub ways: usize,
    /// One evaluation per entry (the paper: 1 and 5).
    pub shots: Vec<usize>,
    pub queries: usize,
    pub episodes: usize,
    pub seed: u64,
    /// L2-normalise every feature before fitting (the default of the common protocol).
    pub normalize: bool,
    pub classifier: LogisticRegression,
}

impl Default for FewShotConfig {
    fn default() -> Self {
        FewShotConfig {
            ways: 5,
            shots: vec![1, 5],
            queries: 15,
            episodes: 3000,
            seed: 0,
            normalize: true,
            classifier: LogisticRegression::default(),
        }
    }
}

/// The result of one shot setting.
#[derive(Clone, Debug)]
pub struct ShotResult {
    pub shots: usize,
    /// Mean query accuracy and the half-width of its 95% interval, in percent.
    pub accuracy: MeanCi,
    /// Episodes whose fit stopped before the gradient tolerance (they still count).
    pub unconverged: usize,
}

/// Checks, before any feature is computed, that every shot setting of `config` can draw its
/// episodes from a split with these labels.
pub fn check(labels: &[usize], class_names: &[String], config: &FewShotConfig) -> Result<()> {
    episode_classes(labels, class_names, config).map(drop)
}

/// The examples of every class that has any, once `config` is known to draw from them.
fn episode_classes(
    labels: &[usize],
    class_names: &[String],
    config: &FewShotConfig,
) -> Result<Vec<Vec<usize>>> {
    if config.episodes < 2 {
        return Err(EvalError::Invalid(format!(
            "--episodes {}: a confidence interval needs at least 2 episodes",
            config.episodes
        )));
    }
    if config.shots.is_empty() {
        return Err(EvalError::Invalid("no shot setting given".into()));
    }
    let by_class: Vec<Vec<usize>> = indices_by_class(labels, class_names.len())
        .into_iter()
        .filter(|examples| !examples.is_empty())
        .collect();
    for &shots in &config.shots {
        config.shape(shots).check(&by_class, class_names)?;
    }
    Ok(by_class)
}

impl FewShotConfig {
    fn shape(&self, shots: usize) -> EpisodeShape {
        EpisodeShape {
            ways: self.ways,
            shots,
            queries: self.queries,
        }
    }
}

/// Runs `config.episodes` episodes per shot setting on `features`.
pub fn evaluate(features: &Embeddings, config: &FewShotConfig) -> Result<Vec<ShotResult>> {
    let by_class = episode_classes(&features.labels, &features.class_names, config)?;
    let features = if config.normalize {
        features.l2_normalized()
    } else {
        features.clone()
    };
    config
        .shots
        .iter()
        .map(|&shots| {
            let shape = config.shape(shots);
            let outcomes: Vec<(f64, bool)> = (0..config.episodes as u64)
                .into_par_iter()
                .map(|e| {
                    let episode = shape.sample(&by_class, config.seed, e);
                    run_episode(&features, &episode, config.ways, &config.classifier)
                })
                .collect::<Result<_>>()?;
            let accuracies: Vec<f64> = outcomes.iter().map(|(a, _)| 100.0 * a).collect();
            Ok(ShotResult {
                shots,
                accuracy: MeanCi::of(&accuracies).expect("at least 2 episodes"),
                unconverged: outcomes.iter().filter(|(_, converged)| !converged).count(),
            })
        })
        .collect()
}

/// The query accuracy of one episode (a fraction) and whether its fit converged.
fn run_episode(
    features: &Embeddings,
    episode: &Episode,
    ways: usize,
    classifier: &LogisticRegression,
) -> Result<(f64, bool)> {
    let rows = |indices: &[usize]| -> Vec<f64> {
        indices
            .iter()
            .flat_map(|&i| features.row(i).iter().map(|&v| f64::from(v)))
            .collect()
    };
    let support = rows(&episode.support);
    let fitted = classifier
        .fit(Samples {
            x: &support,
            labels: &episode.support_labels,
            dim: features.dim,
            classes: ways,
        })
        .map_err(EvalError::Invalid)?;
    let predicted = fitted.predict(&rows(&episode.query));
    let correct = predicted
        .iter()
        .zip(&episode.query_labels)
        .filter(|(p, y)| p == y)
        .count();
    Ok((
        correct as f64 / episode.query.len() as f64,
        fitted.converged,
    ))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    use super::*;

    /// `classes` classes of `per_class` points in `dim` dimensions: a class mean plus
    /// Gaussian noise of standard deviation `noise` (large noise: nearly uninformative).
    fn gaussian_classes(classes: usize, per_class: usize, dim: usize, noise: f32) -> Embeddings {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let means: Vec<Vec<f32>> = (0..classes)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..classes * per_class {
            let c = i % classes;
            for m in &means[c] {
                let n: f32 = StandardNormal.sample(&mut rng);
                values.push(m + noise * n);
            }
            labels.push(c);
        }
        let names = (0..classes).map(|c| format!("class{c}")).collect();
        Embeddings::new(values, dim, labels, names).unwrap()
    }

    fn config(episodes: usize) -> FewShotConfig {
        FewShotConfig {
            episodes,
            ..FewShotConfig::default()
        }
    }

    #[test]
    fn informative_features_score_well_above_chance() {
        let features = gaussian_classes(12, 30, 32, 1.0);
        let results = evaluate(&features, &config(200)).unwrap();
        assert_eq!(results.len(), 2);
        let (one, five) = (&results[0], &results[1]);
        assert_eq!((one.shots, five.shots), (1, 5));
        // Chance is 20%; measured 60.7% and 84.6%.
        assert!(one.accuracy.mean > 50.0, "{one:?}");
        assert!(five.accuracy.mean > 75.0, "{five:?}");
        assert!(five.accuracy.mean > one.accuracy.mean + 5.0, "{results:?}");
        assert!(
            five.accuracy.ci95 > 0.0 && five.accuracy.ci95 < 2.0,
            "{five:?}"
        );
        assert_eq!(one.unconverged + five.unconverged, 0);
    }

    #[test]
    fn uninformative_features_score_near_chance() {
        // The class means are buried in noise 100 times larger: 5-way chance is 20%.
        let features = gaussian_classes(12, 30, 32, 100.0);
        let results = evaluate(&features, &config(300)).unwrap();
        for r in &results {
            let gap = (r.accuracy.mean - 20.0).abs();
            assert!(gap < 3.0 * r.accuracy.ci95.max(1.0), "{r:?}");
        }
    }

    #[test]
    fn results_repeat_and_do_not_depend_on_thread_count() {
        let features = gaussian_classes(8, 25, 16, 1.0);
        let cfg = config(40);
        let a = evaluate(&features, &cfg).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| evaluate(&features, &cfg).unwrap());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.accuracy, y.accuracy);
        }
        let other_seed = FewShotConfig { seed: 1, ..cfg };
        let c = evaluate(&features, &other_seed).unwrap();
        assert_ne!(a[0].accuracy, c[0].accuracy);
    }

    #[test]
    fn normalised_features_make_the_result_scale_invariant() {
        // Scaling every feature by 1024 (a power of two, so normalising undoes it exactly)
        // changes nothing after normalisation; on raw features it weakens the penalty's
        // grip and changes the fits.
        let features = gaussian_classes(6, 25, 8, 2.0);
        let mut scaled = features.clone();
        scaled.values.iter_mut().for_each(|v| *v *= 1024.0);
        let raw = FewShotConfig {
            normalize: false,
            ..config(60)
        };
        let accuracy = |f: &Embeddings, c: &FewShotConfig| evaluate(f, c).unwrap()[0].accuracy;
        assert_eq!(
            accuracy(&features, &config(60)),
            accuracy(&scaled, &config(60))
        );
        assert_ne!(accuracy(&features, &raw), accuracy(&scaled, &raw));
    }

    #[test]
    fn bad_settings_are_errors() {
        let features = gaussian_classes(4, 10, 4, 1.0);
        assert!(evaluate(&features, &config(1)).is_err());
        // 5 ways from 4 classes.
        let err = evaluate(&features, &config(10)).unwrap_err().to_string();
        assert!(err.contains("5 classes"), "{err}");
        // The same verdicts from the labels alone, before any feature exists.
        let check = |c: &FewShotConfig| check(&features.labels, &features.class_names, c);
        assert!(check(&config(1)).is_err());
        assert_eq!(check(&config(10)).unwrap_err().to_string(), err);
        // 4 classes of 10 images: 5 shots + 5 queries fit, 1 shot + 15 queries do not.
        let four_ways = |queries| FewShotConfig {
            ways: 4,
            queries,
            ..config(10)
        };
        assert!(check(&four_ways(5)).is_ok());
        let err = check(&four_ways(15)).unwrap_err().to_string();
        assert!(err.contains("1 shots + 15 queries need 16"), "{err}");
    }
}
