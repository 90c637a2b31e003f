//! A small seeded generator (SplitMix64) for test inputs and token sampling. Its sequence is fixed by this file,
//! not by a dependency's version, so a printed seed reproduces the same inputs forever.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for one named case: the run's seed mixed with a hash of the name, so a
    /// case draws the same inputs however the list is filtered.
    pub fn for_case(seed: u64, name: &str) -> Self {
        // FNV-1a over the name.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Rng(seed ^ hash)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_range() {
        let mut a = Rng::for_case(7, "matmul");
        let mut b = Rng::for_case(7, "matmul");
        let mut c = Rng::for_case(7, "softmax");
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform(-2.0, 3.0)).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.uniform(-2.0, 3.0)).collect();
        let zs: Vec<f64> = (0..1000).map(|_| c.uniform(-2.0, 3.0)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|&x| (-2.0..3.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.15, "mean {mean}");
    }
}
