//! Secrets at rest (webhook signing secrets): AES-256-GCM with keys from
//! `secrets.encryption_keys`. The first key seals; every key opens, so a key
//! is rotated by putting a new one first and keeping the old one until the
//! stored secrets have been re-sealed.
//!
//! Sealed form: key id (first 8 bytes of SHA-256 of the key) || 12-byte
//! nonce || ciphertext and tag.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct SecretBox {
    keys: Vec<([u8; 8], Aes256Gcm)>,
}

impl SecretBox {
    /// Each key: base64 of 32 random bytes (`head -c 32 /dev/urandom | base64`).
    pub fn new(keys: &[String]) -> anyhow::Result<SecretBox> {
        if keys.is_empty() {
            anyhow::bail!("secrets.encryption_keys: set at least one key (base64 of 32 random bytes)");
        }
        let mut out = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let raw =
                STANDARD.decode(k.trim()).map_err(|_| anyhow::anyhow!("secrets.encryption_keys[{i}]: not base64"))?;
            if raw.len() != 32 {
                anyhow::bail!("secrets.encryption_keys[{i}]: must decode to 32 bytes, got {}", raw.len());
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&Sha256::digest(&raw)[..8]);
            out.push((id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&raw))));
        }
        Ok(SecretBox { keys: out })
    }

    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (id, cipher) = self.keys.first().ok_or_else(|| anyhow::anyhow!("no encryption key"))?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct =
            cipher.encrypt(Nonce::from_slice(&nonce), plaintext).map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(8 + 12 + ct.len());
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// `None` when no configured key opens it (or it was tampered with).
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 8 + 12 + 16 {
            return None;
        }
        let (id, rest) = sealed.split_at(8);
        let (nonce, ct) = rest.split_at(12);
        let (_, cipher) = self.keys.iter().find(|(k, _)| k == id)?;
        cipher.decrypt(Nonce::from_slice(nonce), ct).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> String {
        STANDARD.encode([b; 32])
    }

    #[test]
    fn seals_opens_and_rotates() {
        let old = SecretBox::new(&[key(1)]).unwrap();
        let sealed = old.seal(b"whsec_abc").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
        assert_eq!(old.open(&sealed).unwrap(), b"whsec_abc");
        let rotated = SecretBox::new(&[key(2), key(1)]).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), b"whsec_abc");
        let resealed = rotated.seal(b"x").unwrap();
        assert!(old.open(&resealed).is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(old.open(&tampered).is_none());
        assert!(SecretBox::new(&[]).is_err());
        assert!(SecretBox::new(&["short".into()]).is_err());
    }
}
