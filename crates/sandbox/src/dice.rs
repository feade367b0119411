//! `Math.random` for a call (engine.rs gives it to the prelude as a Rust function).

/// `Math.random`: xoshiro128** seeded from the call's seed by splitmix64 (never all zero), 53
/// bits per number (two outputs: 27 and 26 bits). Made in Rust rather than in the prelude: a
/// Rust function costs a fraction of the closures it replaces, in every call's context.
#[derive(Clone, Copy)]
pub(crate) struct Dice([u32; 4]);

impl Dice {
    pub(crate) fn new(seed: u64) -> Dice {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (a, b) = (next(), next());
        let mut words = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if words == [0; 4] {
            words[0] = 1;
        }
        Dice(words)
    }

    fn next(&mut self) -> u32 {
        let [a, b, c, d] = &mut self.0;
        let r = b.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *b << 9;
        *c ^= *a;
        *d ^= *b;
        *b ^= *c;
        *a ^= *d;
        *c ^= t;
        *d = d.rotate_left(11);
        r
    }

    pub(crate) fn random(&mut self) -> f64 {
        let high = f64::from(self.next() >> 5);
        let low = f64::from(self.next() >> 6);
        (high * 67_108_864.0 + low) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_are_never_all_zero() {
        assert_ne!(Dice::new(1).0, Dice::new(2).0);
        assert_ne!(Dice::new(0).0, [0; 4]);
    }
}
