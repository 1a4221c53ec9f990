//! Dropout with explicit masks (MODEL.md layer 2), and the counter-based random
//! generator that makes them: the GPU's `shaders/dropout.wgsl` computes the same
//! integer hash, so a GPU training step can be reproduced here bit for bit.
//!
//! A mask element is 0 (dropped) or 1 / (1 - p) (kept, inverted dropout). Element
//! `i` of stream `s` under step seed `seed` is kept iff
//! `hash(hash(hash(seed) ^ s) ^ i) >> 8 >= round(p * 2^24)`.

/// The shifts and multipliers of Chris Wellons' "lowbias32" integer hash (public
/// domain), chosen because it is a handful of u32 operations that every shading
/// language has. `gpu::wgsl::prelude` writes the WGSL `hash32` from these same
/// constants, so the CPU and every shader share one definition.
pub const HASH_SHIFTS: [u32; 3] = [16, 15, 16];
pub const HASH_MULTIPLIERS: [u32; 2] = [0x7feb_352d, 0x846c_a68b];

/// x ^= x >> s0; x *= m0; x ^= x >> s1; x *= m1; x ^= x >> s2.
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> HASH_SHIFTS[0];
    x = x.wrapping_mul(HASH_MULTIPLIERS[0]);
    x ^= x >> HASH_SHIFTS[1];
    x = x.wrapping_mul(HASH_MULTIPLIERS[1]);
    x ^= x >> HASH_SHIFTS[2];
    x
}

/// 24-bit random value of element `index` in stream `stream`.
pub fn random24(seed: u32, stream: u32, index: u32) -> u32 {
    hash32(hash32(hash32(seed) ^ stream) ^ index) >> 8
}

/// Integer threshold for drop probability p: drop iff random24 < threshold.
pub fn threshold(p: f64) -> u32 {
    (p * f64::from(1u32 << 24)).round() as u32
}

/// Stream id of a dropout site: modality index (T 0, A 1, V 2) times 2, plus
/// 0 for the GRU output and 1 for the dense output.
pub fn stream(modality: usize, site: usize) -> u32 {
    (modality * 2 + site) as u32
}

/// The mask of `n` elements for one stream.
pub fn dropout_mask(seed: u32, stream: u32, n: usize, p: f64) -> Vec<f64> {
    let thr = threshold(p);
    let scale = 1.0 / (1.0 - p);
    (0..n).map(|i| if random24(seed, stream, i as u32) >= thr { scale } else { 0.0 }).collect()
}

/// y = x * mask.
pub fn dropout_forward(x: &[f64], mask: &[f64]) -> Vec<f64> {
    x.iter().zip(mask).map(|(a, m)| a * m).collect()
}

/// dx = dy * mask (written).
pub fn dropout_backward(dx: &mut [f64], dy: &[f64], mask: &[f64]) {
    for ((o, g), m) in dx.iter_mut().zip(dy).zip(mask) {
        *o = g * m;
    }
}
