//! Order statistics of a sample of durations (milliseconds).

use serde::{Deserialize, Serialize};

/// What a sample of milliseconds comes to. Percentiles are nearest-rank on the sorted sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The `p`-quantile (0..=1) of an ascending sample, nearest rank; 0 for an empty one.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    pub fn of(sample: &[f64]) -> Summary {
        let mut s: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Summary::default();
        }
        s.sort_by(f64::total_cmp);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Summary {
            n: s.len(),
            min: round(s[0]),
            mean: round(s.iter().sum::<f64>() / s.len() as f64),
            p50: round(quantile(&s, 0.5)),
            p90: round(quantile(&s, 0.9)),
            p99: round(quantile(&s, 0.99)),
            max: round(s[s.len() - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&xs);
        assert_eq!((s.n, s.min, s.p50, s.p90, s.p99, s.max), (100, 1.0, 50.0, 90.0, 99.0, 100.0));
        assert_eq!(s.mean, 50.5);
        assert_eq!(Summary::of(&[3.0]).p99, 3.0);
        assert_eq!(Summary::of(&[]).n, 0);
        assert_eq!(Summary::of(&[2.0, f64::NAN, 1.0]).n, 2);
    }
}
