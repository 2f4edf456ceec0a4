//! Key format: `dmt_` + 32 base62 characters (190 random bits) + 6 base62
//! characters of CRC-32 over the random part. The prefix lets secret
//! scanners find leaked keys; the checksum lets the server refuse a mistyped
//! or invented key before any lookup.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "dmt_";
const RANDOM_LEN: usize = 32;
const CHECK_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECK_LEN;
/// Characters of a key kept in the clear, to tell keys apart in listings.
pub const DISPLAY_PREFIX_LEN: usize = PREFIX.len() + 8;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn checksum(random: &str) -> String {
    let mut n = crc32fast::hash(random.as_bytes()) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn generate() -> String {
    let random: String = rand::rng().sample_iter(&Alphanumeric).take(RANDOM_LEN).map(char::from).collect();
    let check = checksum(&random);
    format!("{PREFIX}{random}{check}")
}

/// Whether a bearer token is meant as an API key (as opposed to a session JWT).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Shape and checksum only; says nothing about whether the key exists.
pub fn is_well_formed(key: &str) -> bool {
    if key.len() != KEY_LEN || !key.starts_with(PREFIX) || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return false;
    }
    let body = &key[PREFIX.len()..];
    let (random, check) = body.split_at(RANDOM_LEN);
    random.bytes().all(|b| b.is_ascii_alphanumeric()) && checksum(random) == check
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(is_well_formed(&a), "{a}");
    }

    #[test]
    fn a_mistyped_key_fails_its_checksum() {
        let k = generate();
        let mut chars: Vec<char> = k.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!is_well_formed(&typo));
        assert!(!is_well_formed("dmt_short"));
        assert!(!is_well_formed(&k.replace("dmt_", "xyz_")));
    }
}
