//! RSA key generation that reproduces, from the same random stream, the
//! keys `rsa` 0.9 generated (`RsaPrivateKey::new`, whose prime search is
//! `num-bigint-dig`'s): the committed fixtures and every seed users have
//! written down keep their keys. `rsa` 0.10 searches differently
//! (`crypto-primes`), so it cannot be asked to generate them.
//!
//! The search, for a prime of `bits` bits:
//!
//! ```text
//!  draw ⌈bits/8⌉ bytes ─► clear the bits above `bits`, set the top two and the lowest
//!    ─► step by 2 (at most 2²⁰) to the first value with no factor in 3..=53
//!    ─► exactly `bits` bits and prime (Baillie–PSW)? done : draw again
//! ```
//!
//! A key is p (⌊bits/2⌋ bits), then q (the rest); the pair is drawn again
//! if p = q, if n is not `bits` long or if e has no inverse mod (p−1)(q−1);
//! d = e⁻¹ mod (p−1)(q−1) (Euler's totient, as `rsa` 0.9 made it). `rsa`
//! 0.10 then validates the key and computes its CRT values.

use crypto_bigint::BoxedUint;
use num_bigint_dig::{BigUint, ModInverse};
use rand_core::Rng;
use zeroize::Zeroizing;

/// The odd primes whose product still fits a `u64`.
const SMALL_PRIMES: [u64; 15] = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

/// The public exponent of every generated key.
const E: u32 = 65_537;

/// The largest step tried from a drawn candidate.
const MAX_DELTA: u64 = 1 << 20;

/// Whether `bytes` (big-endian, `bits` long) is prime.
fn is_prime(bytes: &[u8]) -> bool {
    let Ok(precision) = u32::try_from(bytes.len() * 8) else {
        return false;
    };
    match BoxedUint::from_be_slice(bytes, precision) {
        Ok(n) => crypto_primes::is_prime(crypto_primes::Flavor::Any, &n),
        Err(_) => false,
    }
}

/// Adds `delta` to the big-endian `bytes`; false if the sum overflows them.
fn add_small(bytes: &mut [u8], delta: u64) -> bool {
    let mut carry = u128::from(delta);
    for byte in bytes.iter_mut().rev() {
        if carry == 0 {
            break;
        }
        let sum = u128::from(*byte) + (carry & 0xFF);
        *byte = sum as u8;
        carry = (carry >> 8) + (sum >> 8);
    }
    carry == 0
}

/// The first even step from a value ≡ `rem` (mod ∏ SMALL_PRIMES) to one
/// none of them divides.
fn sieve_step(rem: u64) -> Option<u64> {
    (0..MAX_DELTA).step_by(2).find(|delta| {
        SMALL_PRIMES
            .iter()
            .all(|p| !(rem + delta).is_multiple_of(*p))
    })
}

/// A random prime of exactly `bits` bits (16 or more).
fn random_prime<R: Rng + ?Sized>(rng: &mut R, bits: usize) -> Zeroizing<Vec<u8>> {
    let len = bits.div_ceil(8);
    // Bits used in the first byte, 1..=8.
    let used = match bits % 8 {
        0 => 8,
        b => b,
    };
    let product: u64 = SMALL_PRIMES.iter().product();
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    loop {
        rng.fill_bytes(&mut bytes);
        if let [first, second, ..] = bytes.as_mut_slice() {
            *first &= ((1u16 << used) - 1) as u8;
            // The top two bits, so that p·q never comes out a bit short.
            if used >= 2 {
                *first |= 3 << (used - 2);
            } else {
                *first |= 1;
                *second |= 0x80;
            }
        }
        if let Some(last) = bytes.last_mut() {
            *last |= 1;
        }
        let rem = bytes.iter().fold(0u128, |r, b| {
            (r * 256 + u128::from(*b)) % u128::from(product)
        });
        let delta = sieve_step(rem as u64).unwrap_or(0);
        if !add_small(&mut bytes, delta) {
            continue;
        }
        let top_ok = bytes
            .first()
            .is_some_and(|b| u32::from(*b).leading_zeros() == 32 - used as u32);
        if top_ok && is_prime(&bytes) {
            return bytes;
        }
    }
}

fn boxed(x: &BigUint) -> Result<BoxedUint, String> {
    let bytes = Zeroizing::new(x.to_bytes_be());
    let precision = u32::try_from(bytes.len() * 8).map_err(|e| e.to_string())?;
    BoxedUint::from_be_slice(&bytes, precision).map_err(|e| format!("{e:?}"))
}

/// An RSA key of `bits` bits (a multiple of 8, 64 or more) drawn from `rng`.
pub(crate) fn rsa_key<R: Rng + ?Sized>(
    rng: &mut R,
    bits: usize,
) -> Result<rsa::PrivateKey, String> {
    let e = BigUint::from(E);
    let one = BigUint::from(1u8);
    loop {
        let p = Zeroizing::new(BigUint::from_bytes_be(&random_prime(rng, bits / 2)));
        let q = Zeroizing::new(BigUint::from_bytes_be(&random_prime(rng, bits - bits / 2)));
        if *p == *q {
            continue;
        }
        let n = &*p * &*q;
        if n.bits() != bits {
            continue;
        }
        let totient = Zeroizing::new((&*p - &one) * (&*q - &one));
        let Some(d) = e
            .clone()
            .mod_inverse(&*totient)
            .and_then(|d| d.to_biguint())
        else {
            continue;
        };
        let d = Zeroizing::new(d);
        return rsa::PrivateKey::from_components(
            boxed(&n)?,
            boxed(&e)?,
            boxed(&d)?,
            vec![boxed(&p)?, boxed(&q)?],
        )
        .map_err(|e| e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_carries_and_overflow_is_refused() {
        let mut b = [0x00, 0xFF, 0xFF];
        assert!(add_small(&mut b, 1));
        assert_eq!(b, [0x01, 0x00, 0x00]);
        let mut b = [0xFF, 0xFE];
        assert!(!add_small(&mut b, 2));
    }

    #[test]
    fn the_sieve_step_skips_small_factors() {
        // 3·5·7 + 2 = 107 is prime; 105 itself is not.
        assert_eq!(sieve_step(105), Some(2));
        assert_eq!(sieve_step(59), Some(0));
        // The small primes themselves are skipped too: 9 → 59.
        assert_eq!(sieve_step(9), Some(50));
    }
}
