//! Session access tokens (short-lived HS256 JWTs) and refresh tokens (random,
//! stored as SHA-256 only).

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub org: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub typ: String,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_secs: i64,
    /// Tokens whose signature was already checked: a client sends the same
    /// token on every request until it expires, and decoding plus HMAC is
    /// the larger part of authenticating one. Keyed by the whole token, so
    /// only the identical bytes hit; expiry is still checked every time.
    verified: moka::sync::Cache<String, Claims>,
}

const ACCESS: &str = "access";
const REFRESH_PREFIX: &str = "dmr_";

impl TokenKeys {
    pub fn new(secret: &str, access_ttl_secs: i64) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injectable clock in `verify`.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes())?,
            decoding: DecodingKey::from_secret(secret.as_bytes())?,
            validation,
            access_ttl_secs,
            verified: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(std::time::Duration::from_secs(access_ttl_secs.max(1) as u64))
                .build(),
        })
    }

    pub fn issue(&self, user: Uuid, org: Uuid, sid: Uuid, now: DateTime<Utc>) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user,
            org,
            sid,
            iat: now.timestamp(),
            exp: now.timestamp() + self.access_ttl_secs,
            typ: ACCESS.into(),
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// `None` for any token that is not a current access token of ours.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<Claims> {
        let claims = match self.verified.get(token) {
            Some(c) => c,
            None => {
                let c = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?.claims;
                if c.typ == ACCESS {
                    self.verified.insert(token.to_string(), c.clone());
                }
                c
            }
        };
        (claims.typ == ACCESS && claims.exp > now.timestamp()).then_some(claims)
    }
}

pub fn new_refresh_token() -> String {
    let random: String = rand::rng().sample_iter(&Alphanumeric).take(43).map(char::from).collect();
    format!("{REFRESH_PREFIX}{random}")
}

pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let keys = TokenKeys::new("0123456789abcdef0123456789abcdef", 60).unwrap();
        let now = Utc::now();
        let (u, o, s) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t = keys.issue(u, o, s, now).unwrap();
        let c = keys.verify(&t, now).unwrap();
        assert_eq!((c.sub, c.org, c.sid), (u, o, s));
        assert!(keys.verify(&t, now + chrono::Duration::seconds(61)).is_none());
        let other = TokenKeys::new("another-secret-0123456789abcdef0123", 60).unwrap();
        assert!(other.verify(&t, now).is_none());
        assert!(keys.verify("not.a.jwt", now).is_none());
    }
}
