//! A seeded, portable source of uniform and standard-normal numbers.
//!
//! candle's CPU generator cannot be seeded, and `rand`'s algorithms may
//! change between versions, so reproducible noise comes from here: a
//! ChaCha20 keystream keyed by SHA-256("mmgen noise v1" || seed), 53-bit
//! uniforms, and normals by Wichura's AS241 inverse normal CDF evaluated
//! with `libm`, whose results do not depend on the platform's C library.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

const BLOCK_WORDS: usize = 32;

/// A deterministic stream of random numbers for one seed.
pub struct NoiseStream {
    cipher: ChaCha20,
    words: [u64; BLOCK_WORDS],
    next: usize,
}

impl NoiseStream {
    /// Starts the stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_domain(b"mmgen noise v1", seed)
    }

    /// Starts a stream for `seed` in a separate domain, so that two uses of
    /// the same seed (initial noise and weight initialisation, say) draw
    /// independent numbers.
    pub fn with_domain(domain: &[u8], seed: u64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(domain);
        hasher.update(seed.to_le_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        Self {
            cipher: ChaCha20::new(&key.into(), &[0u8; 12].into()),
            words: [0; BLOCK_WORDS],
            next: BLOCK_WORDS,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.next == BLOCK_WORDS {
            let mut bytes = [0u8; BLOCK_WORDS * 8];
            self.cipher.apply_keystream(&mut bytes);
            for (word, chunk) in self.words.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(chunk);
                *word = u64::from_le_bytes(le);
            }
            self.next = 0;
        }
        let word = self.words[self.next];
        self.next += 1;
        word
    }

    /// A uniform number in the open interval (0, 1), on a 2^-53 grid.
    pub fn next_uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..bound` (`bound > 0`), without modulo bias.
    pub fn next_below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// A standard normal number.
    pub fn next_normal(&mut self) -> f64 {
        inverse_normal_cdf(self.next_uniform())
    }

    /// Fills `out` with standard normal numbers.
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        for value in out {
            *value = self.next_normal() as f32;
        }
    }
}

/// The standard normal quantile function, Wichura's AS241 (PPND16),
/// accurate to about 1e-16 for `p` in (0, 1).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = libm::sqrt(-libm::log(tail));
    let value = if r <= 5.0 {
        let r = r - 1.6;
        poly(&C, r) / poly(&D, r)
    } else {
        let r = r - 5.0;
        poly(&E, r) / poly(&F, r)
    };
    if q < 0.0 { -value } else { value }
}

/// Evaluates a polynomial with coefficients in ascending order.
fn poly(coefficients: &[f64; 8], x: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, &c| acc * x + c)
}

const A: [f64; 8] = [
    3.387_132_872_796_366_5,
    1.331_416_678_917_843_8e2,
    1.971_590_950_306_551_3e3,
    1.373_169_376_550_946e4,
    4.592_195_393_154_987e4,
    6.726_577_092_700_87e4,
    3.343_057_558_358_813e4,
    2.509_080_928_730_122_7e3,
];
const B: [f64; 8] = [
    1.0,
    4.231_333_070_160_091e1,
    6.871_870_074_920_579e2,
    5.394_196_021_424_751e3,
    2.121_379_430_158_659_7e4,
    3.930_789_580_009_271e4,
    2.872_908_573_572_194_3e4,
    5.226_495_278_852_545e3,
];
const C: [f64; 8] = [
    1.423_437_110_749_683_5,
    4.630_337_846_156_546,
    5.769_497_221_460_691,
    3.647_848_324_763_204_5,
    1.270_458_252_452_368_4,
    2.417_807_251_774_506e-1,
    2.272_384_498_926_918_4e-2,
    7.745_450_142_783_414e-4,
];
const D: [f64; 8] = [
    1.0,
    2.053_191_626_637_759,
    1.676_384_830_183_803_8,
    6.897_673_349_851e-1,
    1.481_039_764_274_800_8e-1,
    1.519_866_656_361_645_7e-2,
    5.475_938_084_995_345e-4,
    1.050_750_071_644_416_9e-9,
];
const E: [f64; 8] = [
    6.657_904_643_501_103,
    5.463_784_911_164_114,
    1.784_826_539_917_291_3,
    2.965_605_718_285_048_7e-1,
    2.653_218_952_657_612_4e-2,
    1.242_660_947_388_078_4e-3,
    2.711_555_568_743_487_6e-5,
    2.010_334_399_292_288_1e-7,
];
const F: [f64; 8] = [
    1.0,
    5.998_322_065_558_88e-1,
    1.369_298_809_227_358e-1,
    1.487_536_129_085_061_5e-2,
    7.868_691_311_456_133e-4,
    1.846_318_317_510_054_8e-5,
    1.421_511_758_316_446e-7,
    2.044_263_103_389_939_7e-15,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_known_values() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-15);
        assert!((inverse_normal_cdf(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert!((inverse_normal_cdf(1e-10) + 6.361_340_902_404_056).abs() < 1e-9);
        assert!((inverse_normal_cdf(0.841_344_746_068_542_9) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = NoiseStream::new(7);
        let mut b = NoiseStream::new(7);
        let mut c = NoiseStream::new(8);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut stream = NoiseStream::new(1);
        let mut values = vec![0f32; 200_000];
        stream.fill_normal(&mut values);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn below_stays_in_range() {
        let mut stream = NoiseStream::new(3);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let value = stream.next_below(5) as usize;
            seen[value] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
