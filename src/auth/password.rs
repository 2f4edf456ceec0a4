//! Passwords: argon2id (the crate's OWASP-recommended defaults), hashed and
//! verified on the blocking pool so they never stall an event loop.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use crate::error::{ApiError, ApiResult};

pub async fn hash(password: String) -> ApiResult<String> {
    actix_web::web::block(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("blocking pool: {e}")))?
    .map_err(ApiError::Internal)
}

/// Verifies against `stored`, or against a fixed dummy hash when the user
/// does not exist, so that both cases take the same time.
pub async fn verify(password: String, stored: Option<String>) -> ApiResult<bool> {
    actix_web::web::block(move || {
        let stored = stored.unwrap_or_else(|| DUMMY.to_string());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && stored != DUMMY
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("blocking pool: {e}")))
}

/// argon2id of a random string nobody knows, with the default parameters.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObGRdescudvJCs";

pub fn check_strength(password: &str, min_len: usize) -> ApiResult<()> {
    let n = password.chars().count();
    if n < min_len {
        return Err(ApiError::invalid("password", format!("must be at least {min_len} characters")));
    }
    if n > 256 {
        return Err(ApiError::invalid("password", "must be at most 256 characters"));
    }
    if password.chars().all(|c| c == password.chars().next().unwrap_or(' ')) {
        return Err(ApiError::invalid("password", "must not repeat a single character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_rules() {
        assert!(check_strength("short", 12).is_err());
        assert!(check_strength("aaaaaaaaaaaaaaaa", 12).is_err());
        assert!(check_strength("correct horse battery", 12).is_ok());
    }

    #[actix_web::test]
    async fn hashes_verify_and_dummy_never_matches() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}
