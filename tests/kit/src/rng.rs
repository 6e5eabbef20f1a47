//! The one seeded generator of the tests and the bench: SplitMix64, the simulator's own
//! [`SimRng`] (portable: the same seed gives the same numbers on every platform and with every
//! `rand` version), with the helpers tests use to pick events, customers and kill points.
//!
//! It implements [`rand::RngCore`], so `rand`'s helpers (`random_range`, …) work on it too.

use kizuna_simulator::rng::SimRng;
use rand::RngCore;

/// A seeded SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(SimRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SimRng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`0` when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` (`lo` when hi < lo).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One of `items`, uniformly (panics on an empty slice, like indexing).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

/// The seed of a test: `KIZUNA_TEST_SEED` when set to a number, else the test's own default.
pub fn seed(default: u64) -> u64 {
    std::env::var("KIZUNA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_splitmix64_reference_sequence() {
        // Reference values of the public-domain C implementation, seed 1234567.
        let mut rng = Rng::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
            ]
        );
    }

    #[test]
    fn helpers_are_drawn_from_the_same_stream() {
        // What the guarantees suite's own generator computed from the same numbers.
        let raw: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut rng = Rng::new(7);
        assert_eq!(rng.below(10), raw[0] % 10);
        assert_eq!(rng.range(-5, 5), -5 + (raw[1] % 11) as i64);
        assert_eq!(rng.unit(), (raw[2] >> 11) as f64 / (1u64 << 53) as f64);
        assert_eq!(
            rng.chance(0.5),
            ((raw[3] >> 11) as f64 / (1u64 << 53) as f64) < 0.5
        );
        assert_eq!(*rng.pick(&[1, 2, 3]), [1, 2, 3][(raw[4] % 3) as usize]);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.range(3, 1), 3);
    }

    #[test]
    fn rand_helpers_work_on_it() {
        use rand::Rng as _;
        let mut rng = Rng::new(3);
        let n = 10_000;
        let mean = (0..n).map(|_| rng.random_range(0..100u32)).sum::<u32>() as f64 / n as f64;
        assert!((mean - 49.5).abs() < 2.0, "{mean}");
    }
}
