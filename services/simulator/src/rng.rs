//! The simulator's random generator: SplitMix64 (Steele, Lea & Flood 2014).
//!
//! Small (8 bytes, so every customer can own one), fast, and portable: the same seed gives the
//! same numbers on every platform and with every `rand` version, which `StdRng` and `SmallRng`
//! do not promise. Each customer draws from its own stream, so a customer's life does not
//! depend on how the events of other customers interleave with it.

use rand::RngCore;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream number `stream` of `seed` (one per customer, per SKU, ...).
    pub fn derive(seed: u64, stream: u64) -> Self {
        Self::new(mix(seed ^ mix(stream.wrapping_add(GOLDEN))))
    }
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn matches_the_splitmix64_reference_sequence() {
        // Reference values of the public-domain C implementation, seed 1234567.
        let mut rng = SimRng::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn derived_streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4).map(|_| SimRng::derive(7, 1).next_u64()).collect();
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "same stream, same numbers"
        );
        let b = SimRng::derive(7, 2).next_u64();
        let c = SimRng::derive(8, 1).next_u64();
        assert_ne!(a[0], b);
        assert_ne!(a[0], c);
    }

    #[test]
    fn uniform_floats_look_uniform() {
        let mut rng = SimRng::new(3);
        let n = 100_000;
        let mean = (0..n).map(|_| rng.random::<f64>()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let mut bytes = [0u8; 13];
        rng.fill_bytes(&mut bytes);
        assert!(bytes.iter().any(|b| *b != 0));
    }
}
