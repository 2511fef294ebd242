//! Small helpers: hex, hashes, keys, time formatting.

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod hex {
    pub fn encode(bytes: &[u8]) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

/// SHA-256 of some bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(data).to_byte_array()
}

/// A deterministic 32-byte value from a label, as hex (fake txids, block hashes...).
pub fn fake_hash_hex(label: &str) -> String {
    hex::encode(&sha256(label.as_bytes()))
}

/// A secret key derived from a seed string (hashed until valid).
pub fn secret_from_seed(seed: &str) -> SecretKey {
    let mut h = sha256(seed.as_bytes());
    loop {
        if let Ok(k) = SecretKey::from_slice(&h) {
            return k;
        }
        h = sha256(&h);
    }
}

/// A valid compressed public key (hex) derived from a seed string: handy for peer ids.
pub fn pubkey_from_seed(seed: &str) -> String {
    let secp = Secp256k1::signing_only();
    PublicKey::from_secret_key(&secp, &secret_from_seed(seed)).to_string()
}

/// The channel id of a funding outpoint (BOLT 2): txid in internal byte order XOR the output index.
pub fn channel_id_for(funding_txid_hex: &str, outnum: u16) -> String {
    let mut bytes = hex::decode(funding_txid_hex).unwrap_or_else(|| vec![0; 32]);
    bytes.reverse();
    let n = bytes.len();
    if n >= 2 {
        bytes[n - 2] ^= (outnum >> 8) as u8;
        bytes[n - 1] ^= (outnum & 0xff) as u8;
    }
    hex::encode(&bytes)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-11-25T19:26:07.389Z`, the timestamp format of `channel_state_changed`.
pub fn iso8601_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso8601(d.as_secs(), d.subsec_millis())
}

pub fn iso8601(secs: u64, millis: u32) -> String {
    let t = UNIX_EPOCH
        + std::time::Duration::from_secs(secs)
        + std::time::Duration::from_millis(millis.into());
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_634_767, 389), "2026-11-25T19:26:07.389Z");
    }

    #[test]
    fn channel_id_matches_fixture() {
        assert_eq!(
            channel_id_for(
                "fffc6688e2ec0b0e0ed3eeb95da4f07d8056a4044eba8b68421faff0d969841d",
                0
            ),
            "1d8469d9f0af1f42688bba4e04a456807df0a45db9eed30e0e0bece28866fcff"
        );
    }
}
