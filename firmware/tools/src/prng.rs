//! A tiny deterministic generator (SplitMix64) so every image is reproducible from its seed.
//!
//! Not cryptographic and not meant to be: it only has to be stable across platforms and releases,
//! because tests and benchmarks compare images built on different machines.

/// SplitMix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct Prng {
    state: u64,
}

impl Prng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A number in `0..n` (0 when `n` is 0). The tiny modulo bias does not matter here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let (words, rest) = buf.as_chunks_mut::<8>();
        for word in words {
            *word = self.next_u64().to_le_bytes();
        }
        let tail = self.next_u64().to_le_bytes();
        for (dst, src) in rest.iter_mut().zip(tail) {
            *dst = src;
        }
    }
}

/// Bytes that look like compiled code and constant data: not compressible to nothing (a gzip of
/// them keeps roughly two thirds of the size, like a real `.bin.gz`), yet not pure noise either.
pub(crate) fn payload(rng: &mut Prng, len: usize) -> Vec<u8> {
    // A per-image "instruction set": a few hundred common 32-bit words, used most of the time.
    let dictionary: Vec<u32> = (0..256).map(|_| rng.next_u32()).collect();
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        let roll = rng.below(100);
        let word = if roll < 48 {
            dictionary.get(rng.below(dictionary.len() as u64) as usize).copied().unwrap_or(0)
        } else if roll < 58 {
            0
        } else if roll < 70 {
            rng.below(4096) as u32
        } else {
            rng.next_u32()
        };
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let a = payload(&mut Prng::new(7), 1000);
        let b = payload(&mut Prng::new(7), 1000);
        let c = payload(&mut Prng::new(8), 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn fill_covers_odd_lengths() {
        let mut buf = [0u8; 13];
        Prng::new(1).fill(&mut buf);
        assert!(buf.iter().filter(|b| **b == 0).count() < 4);
    }
}
