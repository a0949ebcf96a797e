//! Constant-time modular exponentiation for the RSA private operation's
//! two CRT halves: Montgomery multiplication (CIOS) on fixed-size arrays
//! of 64-bit limbs and a fixed 5-bit window whose table is read whole at
//! every step, so the time depends only on the sizes of the modulus and
//! the exponent, never on their values or the base's.
//!
//! ```text
//!  c mod p ──► ·R² (to Montgomery form) ──► table x⁰..x³¹
//!  for each 5-bit window of dp, top first: acc = acc^32 · table[window]  (every entry read)
//!  acc ──► ·1 (out of Montgomery form) ──► c^dp mod p
//! ```
//!
//! It does the two secret exponentiations and the public ones (blinding,
//! fault check) of the backend's private operation; blinding, the CRT
//! recombination and the fault check around it are in
//! `RsaHandle::private_op`. The whole operation is about 2× faster than
//! `rsa` 0.10's blinded `hazmat::rsa_decrypt_and_check` for RSA-2048
//! (`cargo bench -p vcac-benches --bench sign -- raw_private_op`).

use num_bigint_dig::BigUint;
use zeroize::{Zeroize, Zeroizing};

const WINDOW: usize = 5;
const TABLE: usize = 1 << WINDOW;

/// `a·b + acc + carry` as (low, high) words; cannot overflow 128 bits.
#[inline(always)]
fn mac(a: u64, b: u64, acc: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(a) * u128::from(b) + u128::from(acc) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// `a + b + carry` as (sum, carry out).
#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(a) + u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// All ones when `a == b`, else zero, without a branch.
#[inline(always)]
fn ct_eq(a: u64, b: u64) -> u64 {
    let x = a ^ b;
    // The top bit of (x | -x) is set exactly when x != 0.
    ((x | x.wrapping_neg()) >> 63).wrapping_sub(1)
}

/// `x` as `L` little-endian limbs, if it fits.
fn to_limbs<const L: usize>(x: &BigUint) -> Option<[u64; L]> {
    let bytes = Zeroizing::new(x.to_bytes_le());
    if bytes.len() > 8 * L {
        return None;
    }
    let mut out = [0u64; L];
    for (limb, chunk) in out.iter_mut().zip(bytes.chunks(8)) {
        let mut word = [0u8; 8];
        word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
        *limb = u64::from_le_bytes(word);
        word.zeroize();
    }
    Some(out)
}

fn from_limbs(x: &[u64]) -> BigUint {
    let mut bytes = Zeroizing::new(Vec::with_capacity(8 * x.len()));
    for limb in x {
        bytes.extend_from_slice(&limb.to_le_bytes());
    }
    BigUint::from_bytes_le(&bytes)
}

/// An odd modulus of exactly `L` limbs, ready for Montgomery arithmetic
/// with R = 2^(64·L).
pub(super) struct Modulus<const L: usize> {
    n: [u64; L],
    /// −n⁻¹ mod 2⁶⁴.
    n0: u64,
    /// R² mod n (converts into Montgomery form).
    rr: [u64; L],
}

impl<const L: usize> Drop for Modulus<L> {
    fn drop(&mut self) {
        self.n.zeroize();
        self.rr.zeroize();
        self.n0.zeroize();
    }
}

impl<const L: usize> Modulus<L> {
    /// `n` must be odd and its top limb non-zero (64·(L−1) < bits ≤ 64·L).
    pub(super) fn new(n: &BigUint) -> Option<Modulus<L>> {
        let limbs = to_limbs::<L>(n)?;
        let (&low, &high) = (limbs.first()?, limbs.last()?);
        if low & 1 == 0 || high == 0 {
            return None;
        }
        // Newton's iteration doubles the correct low bits of n⁻¹ each
        // step: 1 → 2 → 4 → … → 64 in six steps (n odd, so 1 is right
        // to one bit).
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(low.wrapping_mul(inv)));
        }
        let rr = (BigUint::from(1u8) << (128 * L)) % n;
        Some(Modulus {
            n: limbs,
            n0: inv.wrapping_neg(),
            rr: to_limbs::<L>(&rr)?,
        })
    }

    /// a·b·R⁻¹ mod n for a, b < n (coarsely integrated operand scanning).
    /// Constant time: the same instructions whatever the values.
    // Every index below is a loop counter bounded by the array length L,
    // which the compiler proves (the checks are elided); iterator chains
    // cost about 25 % more here, in the card's hottest loop.
    #[allow(clippy::indexing_slicing)]
    #[inline]
    fn mul(&self, a: &[u64; L], b: &[u64; L]) -> [u64; L] {
        // The running value t has L + 2 words: t[0..L], then hi0, hi1.
        let mut t = [0u64; L];
        let (mut hi0, mut hi1) = (0u64, 0u64);
        for &ai in a {
            // t += ai·b
            let mut c = 0;
            for j in 0..L {
                (t[j], c) = mac(ai, b[j], t[j], c);
            }
            let c2;
            (hi0, c2) = adc(hi0, c, 0);
            hi1 += c2;
            // t = (t + m·n) / 2⁶⁴, where m makes the low word vanish.
            let m = t[0].wrapping_mul(self.n0);
            let (_, mut c) = mac(m, self.n[0], t[0], 0);
            for j in 1..L {
                (t[j - 1], c) = mac(m, self.n[j], t[j], c);
            }
            let c2;
            (t[L - 1], c2) = adc(hi0, c, 0);
            hi0 = hi1 + c2;
            hi1 = 0;
        }
        // t < 2n: subtract n unless that borrows past hi0 (then t < n).
        let mut r = [0u64; L];
        let mut borrow = 0u64;
        for ((o, &tj), &nj) in r.iter_mut().zip(&t).zip(&self.n) {
            let d = u128::from(tj)
                .wrapping_sub(u128::from(nj))
                .wrapping_sub(u128::from(borrow));
            *o = d as u64;
            borrow = ((d >> 64) as u64) & 1;
        }
        let keep_t = (borrow & !hi0 & 1).wrapping_neg();
        for (o, &tj) in r.iter_mut().zip(&t) {
            *o = (tj & keep_t) | (*o & !keep_t);
        }
        t.zeroize();
        r
    }

    /// `base^exp mod n`. `base` is reduced mod n first (variable time in
    /// base's length only); the exponentiation itself is constant time:
    /// all 64·L exponent bits are processed, and each step reads the whole
    /// window table.
    pub(super) fn pow(&self, base: &BigUint, exp: &[u64; L]) -> BigUint {
        let reduced = Zeroizing::new(base % from_limbs(&self.n));
        let mut x = to_limbs::<L>(&reduced).unwrap_or([0u64; L]);
        let mut one = [0u64; L];
        if let Some(o) = one.first_mut() {
            *o = 1;
        }
        let mut table = [[0u64; L]; TABLE];
        let mut prev = self.mul(&self.rr, &one); // R mod n: 1 in Montgomery form
        let xm = self.mul(&x, &self.rr);
        for entry in table.iter_mut() {
            *entry = prev;
            prev = self.mul(&prev, &xm);
        }
        let mut acc = table.first().copied().unwrap_or(one);
        let windows = (64 * L).div_ceil(WINDOW);
        let mut selected = [0u64; L];
        for w in (0..windows).rev() {
            for _ in 0..WINDOW {
                acc = self.mul(&acc, &acc);
            }
            let index = window_bits(exp, w * WINDOW);
            selected = [0u64; L];
            for (i, entry) in table.iter().enumerate() {
                let mask = ct_eq(i as u64, index);
                for (s, &e) in selected.iter_mut().zip(entry) {
                    *s |= e & mask;
                }
            }
            acc = self.mul(&acc, &selected);
        }
        let mut result = self.mul(&acc, &one);
        let out = from_limbs(&result);
        for secret in [&mut x, &mut prev, &mut acc, &mut selected, &mut result] {
            secret.zeroize();
        }
        table.iter_mut().for_each(Zeroize::zeroize);
        out
    }
}

/// The `WINDOW` bits of `exp` starting at bit `pos` (zero past the end).
fn window_bits(exp: &[u64], pos: usize) -> u64 {
    let (limb, shift) = (pos / 64, pos % 64);
    let low = exp.get(limb).copied().unwrap_or(0) >> shift;
    let high = if shift + WINDOW > 64 {
        exp.get(limb + 1).copied().unwrap_or(0) << (64 - shift)
    } else {
        0
    };
    (low | high) & (TABLE as u64 - 1)
}

impl<const L: usize> Modulus<L> {
    /// `x^e mod n` for a public exponent: square-and-multiply over the
    /// bits of `e` (its timing shows e, which is public, and nothing of
    /// `x`: each multiplication is constant time).
    fn pow_public(&self, x: &BigUint, e: u64) -> BigUint {
        let reduced = Zeroizing::new(x % from_limbs(&self.n));
        let mut x = to_limbs::<L>(&reduced).unwrap_or([0u64; L]);
        let mut one = [0u64; L];
        if let Some(o) = one.first_mut() {
            *o = 1;
        }
        let xm = self.mul(&x, &self.rr);
        let mut acc = self.mul(&self.rr, &one);
        for bit in (0..64 - e.leading_zeros()).rev() {
            acc = self.mul(&acc, &acc);
            if (e >> bit) & 1 == 1 {
                acc = self.mul(&acc, &xm);
            }
        }
        let mut result = self.mul(&acc, &one);
        let out = from_limbs(&result);
        for secret in [&mut x, &mut acc, &mut result] {
            secret.zeroize();
        }
        out
    }
}

/// `x^e mod n` with the public key: the blinding factor `r^e` and the
/// fault check `m^e`. `num-bigint-dig`'s `modpow` spends as long on
/// these two (e = 65537) as on the private exponentiations.
pub(super) trait PublicExp: Send + Sync {
    /// `x^e mod n`.
    fn pow_e(&self, x: &BigUint) -> BigUint;
}

struct Public<const L: usize> {
    n: Modulus<L>,
    e: u64,
}

impl<const L: usize> PublicExp for Public<L> {
    fn pow_e(&self, x: &BigUint) -> BigUint {
        self.n.pow_public(x, self.e)
    }
}

fn public<const L: usize>(n: &BigUint, e: u64) -> Option<Box<dyn PublicExp>> {
    Some(Box::new(Public::<L> {
        n: Modulus::new(n)?,
        e,
    }))
}

/// The public operation for moduli of 1024 to 4096 bits (16, 32, 48, 64
/// limbs) and exponents that fit 64 bits, or `None`.
pub(super) fn public_exp(n: &BigUint, e: &BigUint) -> Option<Box<dyn PublicExp>> {
    let [e] = to_limbs::<1>(e)?;
    match n.bits().div_ceil(64) {
        16 => public::<16>(n, e),
        32 => public::<32>(n, e),
        48 => public::<48>(n, e),
        64 => public::<64>(n, e),
        _ => None,
    }
}

/// The two secret exponentiations of RSA-CRT: `x^dp mod p` and
/// `x^dq mod q`.
pub(super) trait CrtExp: Send + Sync {
    /// `x^dp mod p`.
    fn exp_p(&self, x: &BigUint) -> BigUint;
    /// `x^dq mod q`.
    fn exp_q(&self, x: &BigUint) -> BigUint;
}

struct Crt<const L: usize> {
    p: Modulus<L>,
    q: Modulus<L>,
    dp: [u64; L],
    dq: [u64; L],
}

impl<const L: usize> Drop for Crt<L> {
    fn drop(&mut self) {
        self.dp.zeroize();
        self.dq.zeroize();
    }
}

impl<const L: usize> CrtExp for Crt<L> {
    fn exp_p(&self, x: &BigUint) -> BigUint {
        self.p.pow(x, &self.dp)
    }

    fn exp_q(&self, x: &BigUint) -> BigUint {
        self.q.pow(x, &self.dq)
    }
}

fn crt<const L: usize>(
    p: &BigUint,
    q: &BigUint,
    dp: &BigUint,
    dq: &BigUint,
) -> Option<Box<dyn CrtExp>> {
    Some(Box::new(Crt::<L> {
        p: Modulus::new(p)?,
        q: Modulus::new(q)?,
        dp: to_limbs(dp)?,
        dq: to_limbs(dq)?,
    }))
}

/// The CRT exponentiations for primes `p`, `q` of equal size — 512, 1024,
/// 1536 or 2048 bits, the halves of RSA-1024 to RSA-4096 — or `None`
/// (other shapes take the `rsa` crate's path).
pub(super) fn crt_exp(
    p: &BigUint,
    q: &BigUint,
    dp: &BigUint,
    dq: &BigUint,
) -> Option<Box<dyn CrtExp>> {
    let limbs = p.bits().div_ceil(64);
    if q.bits().div_ceil(64) != limbs {
        return None;
    }
    match limbs {
        8 => crt::<8>(p, q, dp, dq),
        16 => crt::<16>(p, q, dp, dq),
        24 => crt::<24>(p, q, dp, dq),
        32 => crt::<32>(p, q, dp, dq),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn random_below_bits(rng: &mut ChaCha20Rng, bits: usize) -> BigUint {
        let mut bytes = vec![0u8; bits.div_ceil(8)];
        rng.fill_bytes(&mut bytes);
        BigUint::from_bytes_le(&bytes) % (BigUint::from(1u8) << bits)
    }

    fn odd_modulus(rng: &mut ChaCha20Rng, bits: usize) -> BigUint {
        random_below_bits(rng, bits) | BigUint::from(1u8) | (BigUint::from(1u8) << (bits - 1))
    }

    fn check<const L: usize>(rng: &mut ChaCha20Rng, rounds: usize) {
        for round in 0..rounds {
            // Vary the top: full-width moduli and ones a few bits short.
            let bits = 64 * L - (round % 3) * 7;
            let n = odd_modulus(rng, bits);
            let m = Modulus::<L>::new(&n).unwrap();
            let e = random_below_bits(rng, 64 * L);
            let el = to_limbs::<L>(&e).unwrap();
            let n_minus_1 = &n - BigUint::from(1u8);
            let big = random_below_bits(rng, 2 * 64 * L); // wider than n
            for base in [
                random_below_bits(rng, bits) % &n,
                BigUint::from(0u8),
                BigUint::from(1u8),
                BigUint::from(2u8),
                n_minus_1.clone(),
                big,
            ] {
                assert_eq!(
                    m.pow(&base, &el),
                    base.modpow(&e, &n),
                    "L={L} base={base:x}"
                );
            }
            let zero = [0u64; L];
            assert_eq!(m.pow(&BigUint::from(7u8), &zero), BigUint::from(1u8));
            let mut one = [0u64; L];
            one[0] = 1;
            assert_eq!(m.pow(&n_minus_1, &one), n_minus_1);
        }
    }

    #[test]
    fn pow_matches_num_bigint_for_every_rsa_prime_size() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        check::<1>(&mut rng, 30);
        check::<2>(&mut rng, 30);
        check::<8>(&mut rng, 6);
        check::<16>(&mut rng, 3);
        check::<24>(&mut rng, 2);
        check::<32>(&mut rng, 2);
    }

    #[test]
    fn public_pow_matches_num_bigint() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for bits in [1024, 2048, 3072, 4096] {
            let n = odd_modulus(&mut rng, bits);
            for e in [3u64, 65537, 0xFFFF_FFFF_FFFF_FFFF, 1] {
                let p = public_exp(&n, &BigUint::from(e)).unwrap();
                for x in [
                    random_below_bits(&mut rng, bits) % &n,
                    BigUint::from(0u8),
                    &n - BigUint::from(1u8),
                ] {
                    assert_eq!(
                        p.pow_e(&x),
                        x.modpow(&BigUint::from(e), &n),
                        "{bits} bits, e={e}"
                    );
                }
            }
        }
        let n = odd_modulus(&mut rng, 900);
        assert!(
            public_exp(&n, &BigUint::from(3u8)).is_none(),
            "not a supported size"
        );
        let n = odd_modulus(&mut rng, 2048);
        assert!(
            public_exp(&n, &(BigUint::from(1u8) << 64)).is_none(),
            "e over 64 bits"
        );
    }

    #[test]
    fn rejects_even_or_mis_sized_moduli() {
        assert!(Modulus::<2>::new(&BigUint::from(10u8)).is_none(), "even");
        assert!(
            Modulus::<2>::new(&BigUint::from(11u8)).is_none(),
            "top limb zero"
        );
        assert!(
            Modulus::<1>::new(&(BigUint::from(1u8) << 64 | BigUint::from(1u8))).is_none(),
            "too wide"
        );
        assert!(Modulus::<1>::new(&BigUint::from(11u8)).is_some());
    }

    #[test]
    fn window_bits_reads_across_limbs() {
        let exp = [0xF000_0000_0000_0000u64, 0b101];
        assert_eq!(window_bits(&exp, 60), 0b11111);
        assert_eq!(window_bits(&exp, 62), 0b10111);
        assert_eq!(window_bits(&exp, 125), 0);
        assert_eq!(window_bits(&exp, 500), 0);
    }

    #[test]
    fn ct_eq_is_a_mask() {
        assert_eq!(ct_eq(3, 3), u64::MAX);
        assert_eq!(ct_eq(3, 4), 0);
        assert_eq!(ct_eq(0, u64::MAX), 0);
    }
}
