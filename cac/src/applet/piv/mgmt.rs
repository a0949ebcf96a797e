//! The card management key's block cipher (3DES-EDE or AES, one ECB
//! block), for 9B authentication.

use aes::cipher::{BlockCipherEncrypt, KeyInit};

use super::options::{ManagementAlgorithm, ManagementKey};

/// Encrypts `block` in place with the management key (one block).
pub(crate) fn encrypt(key: &ManagementKey, block: &mut [u8]) -> Result<(), ()> {
    if block.len() != key.algorithm.block_len() {
        return Err(());
    }
    match key.algorithm {
        ManagementAlgorithm::Tdes => ecb::<des::TdesEde3>(&key.key, block),
        ManagementAlgorithm::Aes128 => ecb::<aes::Aes128>(&key.key, block),
        ManagementAlgorithm::Aes192 => ecb::<aes::Aes192>(&key.key, block),
        ManagementAlgorithm::Aes256 => ecb::<aes::Aes256>(&key.key, block),
    }
}

fn ecb<C: BlockCipherEncrypt + KeyInit>(key: &[u8], block: &mut [u8]) -> Result<(), ()> {
    let cipher = C::new_from_slice(key).map_err(|_| ())?;
    let block: &mut aes::cipher::Block<C> = block.try_into().map_err(|_| ())?;
    cipher.encrypt_block(block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn known_answers() {
        // 3DES with 01..08 ×3 is single DES with 0102030405060708.
        let key = ManagementKey::default();
        let mut block = hex!("0000000000000000");
        encrypt(&key, &mut block).unwrap();
        assert_eq!(block, hex!("b073dc3fb209536d"));
        // FIPS-197 C.1.
        let key = ManagementKey::new(
            ManagementAlgorithm::Aes128,
            &hex!("000102030405060708090a0b0c0d0e0f"),
        )
        .unwrap();
        let mut block = hex!("00112233445566778899aabbccddeeff");
        encrypt(&key, &mut block).unwrap();
        assert_eq!(block, hex!("69c4e0d86a7b0430d8cdb78070b4c55a"));
        assert!(encrypt(&key, &mut [0u8; 8]).is_err());
    }
}
