//! JWT bearer tokens signed with HS256 (a shared secret), carrying SMART on FHIR claims:
//! `scope`, `patient`, `fhirUser`, and `sub`; `exp` and `nbf` are enforced. The role comes
//! from a `role` claim when present, else from the scopes (patient scopes: patient).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::role::{Identity, Role};
use crate::scope::Scopes;

/// Verifies HS256 tokens with one secret.
pub struct Hs256 {
    secret: Vec<u8>,
}

impl Hs256 {
    pub fn new(secret: &[u8]) -> Result<Hs256, Error> {
        if secret.len() < 32 {
            return Err(Error::Invalid("an HS256 secret must be at least 32 bytes".into()));
        }
        Ok(Hs256 { secret: secret.to_vec() })
    }

    /// The identity of a valid token; `Ok(None)` when the text is not a JWT at all.
    pub fn authenticate(&self, token: &str, now_seconds: i64) -> Result<Option<Identity>, Error> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Ok(None);
        }
        let header: Value = decode_json(parts[0])?;
        if header["alg"] != "HS256" {
            return Err(Error::Invalid(format!("unsupported JWT algorithm {}", header["alg"])));
        }
        let expected = hmac(&self.secret, format!("{}.{}", parts[0], parts[1]).as_bytes());
        let signature = base64url_decode(parts[2])
            .ok_or_else(|| Error::Invalid("the JWT signature is not base64url".into()))?;
        if !constant_time_eq(&expected, &signature) {
            return Err(Error::Invalid("the JWT signature does not verify".into()));
        }
        let claims: Value = decode_json(parts[1])?;
        if claims["exp"].as_i64().is_none_or(|exp| exp <= now_seconds) {
            return Err(Error::Invalid("the JWT has expired (or has no exp)".into()));
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now_seconds) {
            return Err(Error::Invalid("the JWT is not valid yet".into()));
        }
        let scopes = Scopes::parse(claims["scope"].as_str().unwrap_or_default())?;
        let patient = claims["patient"].as_str().map(str::to_string);
        let role = match claims["role"].as_str() {
            Some(role) => Role::parse(role)?,
            None if scopes.patient_only() => Role::Patient,
            None => Role::Clinician,
        };
        if scopes.patient_only() && patient.is_none() {
            return Err(Error::Invalid("patient scopes need a patient claim".into()));
        }
        let user = claims["sub"].as_str().unwrap_or("jwt").to_string();
        Ok(Some(Identity {
            user,
            role,
            patient,
            scopes,
            fhir_user: claims["fhirUser"].as_str().map(str::to_string),
        }))
    }
}

fn decode_json(part: &str) -> Result<Value, Error> {
    let bytes = base64url_decode(part).ok_or_else(|| Error::Invalid("a JWT part is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("a JWT part is not JSON: {e}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 with a key of any length.
pub(crate) fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for i in 0..64 {
        inner_pad[i] ^= block[i];
        outer_pad[i] ^= block[i];
    }
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(outer_pad).chain_update(inner).finalize().into()
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let produced = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

fn base64url_encode(bytes: &[u8]) -> String {
    fhir::base64_encode(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

/// Signs `claims` as an HS256 JWT (for tools and tests that stand in for an authorization
/// server).
pub fn sign(secret: &[u8], claims: &Value) -> String {
    let header = base64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = base64url_encode(claims.to_string().as_bytes());
    let signature = base64url_encode(&hmac(secret, format!("{header}.{payload}").as_bytes()));
    format!("{header}.{payload}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(crate::hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn valid_tokens_carry_their_smart_claims_and_bad_ones_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let verifier = Hs256::new(secret).unwrap();
        let patient = sign(
            secret,
            &serde_json::json!({ "sub": "alice", "scope": "launch/patient patient/*.rs", "patient": "pa", "exp": 2_000 }),
        );
        let identity = verifier.authenticate(&patient, 1_000).unwrap().unwrap();
        assert_eq!(
            (identity.role, identity.patient.as_deref(), identity.user.as_str()),
            (Role::Patient, Some("pa"), "alice")
        );
        let clinician = sign(
            secret,
            &serde_json::json!({ "sub": "grey", "scope": "user/*.cruds", "fhirUser": "Practitioner/1", "exp": 2_000 }),
        );
        let identity = verifier.authenticate(&clinician, 1_000).unwrap().unwrap();
        assert_eq!((identity.role, identity.fhir_user.as_deref()), (Role::Clinician, Some("Practitioner/1")));
        assert!(verifier.authenticate(&clinician, 3_000).is_err(), "expired");
        let forged = sign(
            b"another secret of thirty-two bytes",
            &serde_json::json!({ "sub": "x", "scope": "system/*.cruds", "exp": 2_000 }),
        );
        assert!(verifier.authenticate(&forged, 1_000).is_err(), "wrong key");
        let no_patient = sign(secret, &serde_json::json!({ "scope": "patient/*.rs", "exp": 2_000 }));
        assert!(verifier.authenticate(&no_patient, 1_000).is_err());
        assert!(verifier.authenticate("chr_abc", 1_000).unwrap().is_none(), "not a JWT");
        assert!(Hs256::new(b"short").is_err());
    }
}
