//! JWT bearer tokens carrying SMART on FHIR claims: `scope`, `patient`, `fhirUser`, `sub`
//! and an optional `role` (else the role follows from the scopes: patient scopes, patient).
//!
//! Signed HS256 with a shared secret ([`Hs256`]), or RS256 / ES256 by an authorization server
//! whose public keys are configured as a JWKS ([`Jwks`]). A [`Verifier`] holds what is
//! configured and picks by the header's `alg`, but only among what is configured: an HS256
//! header is refused when only public keys are, so a public key can never be used as an HMAC
//! secret (the classic key-confusion forgery), and `alg: none` is always refused. The key is
//! chosen by `kid`, and must be of the type the algorithm needs. Only after the signature
//! verifies are the claims read: `exp` is required, `nbf` is enforced, and `iss` / `aud` are
//! checked when configured.

use std::path::Path;

use ring::signature::{self, KeyPair as _, RsaPublicKeyComponents, UnparsedPublicKey};
use ring::{hmac, rand};
use serde_json::{Map, Value, json};

use crate::Error;
use crate::role::{Identity, Role};
use crate::scope::Scopes;

/// The signature algorithms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Hs256,
    Rs256,
    Es256,
    /// RS384 and ES384: what SMART Backend Services clients sign their assertions with.
    Rs384,
    Es384,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Es384 => "ES384",
        }
    }

    fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "RS384" => Some(Algorithm::Rs384),
            "ES384" => Some(Algorithm::Es384),
            _ => None,
        }
    }
}

/// A shared HS256 secret.
pub struct Hs256 {
    key: hmac::Key,
}

impl Hs256 {
    pub fn new(secret: &[u8]) -> Result<Hs256, Error> {
        // RFC 7518 §3.2: a key at least as long as the hash output.
        if secret.len() < 32 {
            return Err(Error::Invalid("an HS256 secret must be at least 32 bytes".into()));
        }
        Ok(Hs256 { key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }

    fn verify(&self, signed: &[u8], signature: &[u8]) -> Result<(), Error> {
        hmac::verify(&self.key, signed, signature).map_err(|_| bad_signature())
    }
}

/// The public keys of an authorization server or of a client: the RSA (RS256, RS384) and
/// EC P-256 / P-384 (ES256, ES384) signing keys of a JWKS (RFC 7517). Keys for other
/// algorithms or for encryption are passed over.
pub struct Jwks {
    keys: Vec<Jwk>,
}

struct Jwk {
    kid: Option<String>,
    /// The key's own `alg`, when it names one: the key is then for that algorithm only.
    alg: Option<Algorithm>,
    key: PublicKey,
}

enum PublicKey {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// A P-256 point, uncompressed (`0x04 || x || y`).
    P256(Vec<u8>),
    /// A P-384 point, uncompressed.
    P384(Vec<u8>),
}

impl Jwk {
    fn kty(&self) -> &'static str {
        match self.key {
            PublicKey::Rsa(_) => "RSA",
            PublicKey::P256(_) => "EC P-256",
            PublicKey::P384(_) => "EC P-384",
        }
    }

    fn fits(&self, alg: Algorithm) -> bool {
        let type_fits = match self.key {
            PublicKey::Rsa(_) => matches!(alg, Algorithm::Rs256 | Algorithm::Rs384),
            PublicKey::P256(_) => alg == Algorithm::Es256,
            PublicKey::P384(_) => alg == Algorithm::Es384,
        };
        type_fits && self.alg.is_none_or(|own| own == alg)
    }

    fn verify(&self, alg: Algorithm, signed: &[u8], signature: &[u8]) -> Result<(), Error> {
        let verified =
            match &self.key {
                PublicKey::Rsa(components) if alg == Algorithm::Rs384 => {
                    components.verify(&signature::RSA_PKCS1_2048_8192_SHA384, signed, signature)
                }
                PublicKey::Rsa(components) => {
                    components.verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, signature)
                }
                // JWS carries ECDSA signatures as the raw r || s (RFC 7518 §3.4), never DER.
                PublicKey::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, signature),
                PublicKey::P384(point) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(signed, signature),
            };
        verified.map_err(|_| bad_signature())
    }
}

impl Jwks {
    /// Reads a JWKS file (`{"keys": [...]}`).
    pub fn load(path: &Path) -> Result<Jwks, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("cannot read the JWKS {}: {e}", path.display())))?;
        Jwks::from_json(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Jwks, Error> {
        let document: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Invalid(format!("the JWKS is not JSON: {e}")))?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Invalid("the JWKS has no \"keys\" array".into()))?;
        let mut keys: Vec<Jwk> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry
                .as_object()
                .ok_or_else(|| Error::Invalid(format!("keys[{index}] is not a JSON object")))?;
            let kid = match entry.get("kid") {
                None => None,
                Some(Value::String(kid)) => Some(kid.clone()),
                Some(_) => return Err(Error::Invalid(format!("keys[{index}]: kid must be a string"))),
            };
            let name = kid.as_deref().map_or_else(|| format!("keys[{index}]"), |k| format!("key {k}"));
            let Some((key, alg)) = parse_key(entry, &name)? else { continue };
            if let Some(kid) = &kid
                && keys.iter().any(|k| k.kid.as_ref() == Some(kid))
            {
                return Err(Error::Invalid(format!("the JWKS has two keys with kid {kid}")));
            }
            keys.push(Jwk { kid, alg, key });
        }
        if keys.is_empty() {
            return Err(Error::Invalid("the JWKS holds no RSA or EC P-256/P-384 signing key".into()));
        }
        Ok(Jwks { keys })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header designates: by `kid`, else the only key fit for `alg`.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&Jwk, Error> {
        match kid {
            Some(kid) => {
                let key = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or_else(|| {
                    Error::Jwt(format!("the JWT's key (kid {kid}) is not among the configured keys"))
                })?;
                if !key.fits(alg) {
                    return Err(Error::Jwt(format!(
                        "the JWT's alg {} does not fit its key {kid} ({}{})",
                        alg.as_str(),
                        key.kty(),
                        key.alg.map_or_else(String::new, |a| format!(", for {}", a.as_str()))
                    )));
                }
                Ok(key)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(Error::Jwt(format!("no configured key is for {}", alg.as_str()))),
                    (Some(_), Some(_)) => Err(Error::Jwt(format!(
                        "the JWT names no kid and several configured keys are for {}",
                        alg.as_str()
                    ))),
                }
            }
        }
    }
}

/// One JWK: `Ok(None)` for a key this server does not verify with (another algorithm, an
/// encryption key); errors for a key that claims to be usable but is malformed.
fn parse_key(
    entry: &Map<String, Value>,
    name: &str,
) -> Result<Option<(PublicKey, Option<Algorithm>)>, Error> {
    let text = |member: &str| -> Result<Option<&str>, Error> {
        match entry.get(member) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(Error::Invalid(format!("{name}: {member} must be a string"))),
        }
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = entry.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"))
    {
        return Ok(None);
    }
    let alg = match text("alg")? {
        None => None,
        Some(alg) => match Algorithm::parse(alg) {
            Some(Algorithm::Hs256) | None => return Ok(None),
            known => known,
        },
    };
    let bytes = |member: &str| -> Result<Vec<u8>, Error> {
        let value = text(member)?.ok_or_else(|| Error::Invalid(format!("{name}: {member} is missing")))?;
        base64url_decode(value).ok_or_else(|| Error::Invalid(format!("{name}: {member} is not base64url")))
    };
    let kty = text("kty")?.ok_or_else(|| Error::Invalid(format!("{name}: kty is missing")))?;
    // A private key in the server's configuration is a mistake worth stopping for: whoever
    // can read the file could sign tokens.
    if ["d", "p", "q", "k"].iter().any(|m| entry.contains_key(*m)) && matches!(kty, "RSA" | "EC") {
        return Err(Error::Invalid(format!("{name} is a private key; configure the public keys only")));
    }
    match kty {
        "RSA" => {
            if alg.is_some_and(|a| !matches!(a, Algorithm::Rs256 | Algorithm::Rs384)) {
                return Ok(None);
            }
            // RFC 7518 asks for no leading zeros; some issuers add one to keep the sign bit clear.
            let strip = |mut bytes: Vec<u8>| {
                let zeros = bytes.iter().take_while(|b| **b == 0).count();
                bytes.drain(..zeros);
                bytes
            };
            let n = strip(bytes("n")?);
            let e = strip(bytes("e")?);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if !(2048..=8192).contains(&bits) {
                return Err(Error::Invalid(format!(
                    "{name}: an RSA modulus of {bits} bits; 2048 to 8192 are accepted"
                )));
            }
            if e.is_empty() {
                return Err(Error::Invalid(format!("{name}: the RSA exponent is zero")));
            }
            Ok(Some((PublicKey::Rsa(RsaPublicKeyComponents { n, e }), alg)))
        }
        "EC" => {
            let (curve, size, fitting) = match text("crv")? {
                Some("P-256") => ("P-256", 32, Algorithm::Es256),
                Some("P-384") => ("P-384", 48, Algorithm::Es384),
                _ => return Ok(None),
            };
            if alg.is_some_and(|a| a != fitting) {
                return Ok(None);
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != size || y.len() != size {
                return Err(Error::Invalid(format!(
                    "{name}: {curve} coordinates x and y must be {size} bytes each"
                )));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = if size == 32 { PublicKey::P256(point) } else { PublicKey::P384(point) };
            Ok(Some((key, alg)))
        }
        _ => Ok(None),
    }
}

/// What bearer JWTs are accepted: the keys configured, and the issuer and audience expected.
#[derive(Default)]
pub struct Verifier {
    hs256: Option<Hs256>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl From<Hs256> for Verifier {
    fn from(hs256: Hs256) -> Verifier {
        Verifier::default().with_hs256(hs256)
    }
}

impl From<Jwks> for Verifier {
    fn from(jwks: Jwks) -> Verifier {
        Verifier::default().with_jwks(jwks)
    }
}

impl Verifier {
    pub fn with_hs256(mut self, hs256: Hs256) -> Verifier {
        self.hs256 = Some(hs256);
        self
    }

    pub fn with_jwks(mut self, jwks: Jwks) -> Verifier {
        self.jwks = Some(jwks);
        self
    }

    /// Tokens must carry this `iss`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Verifier {
        self.issuer = Some(issuer.into());
        self
    }

    /// Tokens must name this audience in `aud` (a string or one of a list).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Verifier {
        self.audience = Some(audience.into());
        self
    }

    /// The identity of a valid token; `Ok(None)` when the text is not a JWT at all (so other
    /// kinds of token can be tried); an error saying what is wrong with a JWT that fails.
    pub fn authenticate(&self, token: &str, now_seconds: i64) -> Result<Option<Identity>, Error> {
        match self.verify(token, now_seconds)? {
            Some(claims) => identity(&claims, Subjects::Foreign).map(Some),
            None => Ok(None),
        }
    }

    /// The claims of a token whose signature, lifetime, issuer and audience are good;
    /// `Ok(None)` when the text is not a JWT at all.
    pub fn verify(&self, token: &str, now_seconds: i64) -> Result<Option<Map<String, Value>>, Error> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let header_json = decode_json(header, "header")?;
        if header_json.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions this server does not know must not be ignored.
            return Err(Error::Jwt(
                "the JWT header has critical extensions (crit), none of which are supported".into(),
            ));
        }
        let alg = match header_json.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => return Err(Error::Jwt("the JWT header names no alg".into())),
        };
        let kid = match header_json.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(Error::Jwt("the JWT header's kid is not a string".into())),
        };
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        let signature = base64url_decode(signature)
            .ok_or_else(|| Error::Jwt("the JWT signature is not base64url".into()))?;
        match Algorithm::parse(alg) {
            Some(Algorithm::Hs256) => self
                .hs256
                .as_ref()
                .ok_or_else(|| {
                    Error::Jwt("HS256 tokens are not accepted: no shared secret is configured".into())
                })?
                .verify(signed, &signature)?,
            Some(alg) => self
                .jwks
                .as_ref()
                .ok_or_else(|| {
                    Error::Jwt(format!("{} tokens are not accepted: no JWKS is configured", alg.as_str()))
                })?
                .select(alg, kid)?
                .verify(alg, signed, &signature)?,
            None if alg.eq_ignore_ascii_case("none") => {
                return Err(Error::Jwt("unsigned JWTs (alg none) are refused".into()));
            }
            None => {
                return Err(Error::Jwt(format!(
                    "the JWT algorithm {alg} is not supported (HS256, RS256, RS384, ES256, ES384)"
                )));
            }
        }
        let claims = decode_json(payload, "payload")?;
        self.check_validity(&claims, now_seconds)?;
        Ok(Some(claims))
    }

    /// The registered claims: lifetime, issuer, audience.
    fn check_validity(&self, claims: &Map<String, Value>, now_seconds: i64) -> Result<(), Error> {
        match numeric_date(claims, "exp")? {
            Some(exp) if exp > now_seconds => {}
            Some(_) => return Err(Error::Jwt("the JWT has expired".into())),
            None => return Err(Error::Jwt("the JWT has no exp: tokens must expire".into())),
        }
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now_seconds) {
            return Err(Error::Jwt("the JWT is not valid yet (nbf)".into()));
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(Error::Jwt(format!("the JWT was not issued by {issuer} (iss)")));
        }
        if let Some(audience) = &self.audience {
            let named = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience.as_str())),
                _ => false,
            };
            if !named {
                return Err(Error::Jwt(format!("the JWT is not meant for {audience} (aud)")));
            }
        }
        Ok(())
    }
}

/// A NumericDate claim (seconds since the epoch; fractions allowed, RFC 7519 §2).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| Error::Jwt(format!("the JWT's {name} is not a number of seconds"))),
    }
}

/// Whose names a token's subjects are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subjects {
    /// An outside issuer's: kept apart as `jwt:{sub}`.
    Foreign,
    /// This server's own authorization server's: local user names and client ids, as they are.
    Local,
}

/// The SMART claims of a verified token, whatever signed it.
pub fn identity(claims: &Map<String, Value>, subjects: Subjects) -> Result<Identity, Error> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let scopes = Scopes::parse(text("scope").unwrap_or_default())?;
    let patient = text("patient").map(str::to_string);
    let role = match text("role") {
        Some(role) => Role::parse(role)?,
        None if scopes.patient_only() => Role::Patient,
        None => Role::Clinician,
    };
    // Patient scopes without the patient would be confined to no one, and so to nothing the
    // policy could check: refused here and by the policy.
    if (role == Role::Patient || scopes.has_patient_scopes()) && patient.is_none() {
        return Err(Error::Jwt("a token with role patient or patient/ scopes needs a patient claim".into()));
    }
    // The subject names who acts: export jobs and the audit trail are theirs. Kept apart from
    // the names `chartroom user add` gives, so that no token can pass for a local user.
    let Some(subject) = text("sub").filter(|s| !s.trim().is_empty()) else {
        return Err(Error::Jwt("the JWT names no subject (sub)".into()));
    };
    Ok(Identity {
        user: match subjects {
            Subjects::Foreign => format!("jwt:{subject}"),
            Subjects::Local => subject.to_string(),
        },
        role,
        patient,
        scopes,
        fhir_user: text("fhirUser").map(str::to_string),
    })
}

fn bad_signature() -> Error {
    Error::Jwt("the JWT signature does not verify".into())
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, Error> {
    let bytes =
        base64url_decode(part).ok_or_else(|| Error::Jwt(format!("the JWT {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Error::Jwt(format!("the JWT {what} is not a JSON object"))),
        Err(e) => Err(Error::Jwt(format!("the JWT {what} is not JSON: {e}"))),
    }
}

/// HMAC-SHA256 (RFC 2104) with a key of any length.
pub(crate) fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
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

pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
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

/// A signing key with its `kid`: the authorization server's own (ES256), and for tools and
/// tests that stand in for an outside authorization server or a client (RS256, RS384, ES256,
/// ES384): signs tokens and gives the public JWK to configure.
pub struct Signer {
    kid: String,
    key: SigningKey,
}

enum SigningKey {
    Rsa(signature::RsaKeyPair, Algorithm),
    Ecdsa(signature::EcdsaKeyPair, Algorithm),
}

impl Signer {
    /// An RSA private key (PKCS#8, DER), signing RS256.
    pub fn rs256(kid: &str, pkcs8: &[u8]) -> Result<Signer, Error> {
        Signer::rsa(kid, pkcs8, Algorithm::Rs256)
    }

    /// An RSA private key (PKCS#8, DER), signing RS384.
    pub fn rs384(kid: &str, pkcs8: &[u8]) -> Result<Signer, Error> {
        Signer::rsa(kid, pkcs8, Algorithm::Rs384)
    }

    fn rsa(kid: &str, pkcs8: &[u8], alg: Algorithm) -> Result<Signer, Error> {
        let key = signature::RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(|e| Error::Invalid(format!("not an RSA private key in PKCS#8: {e}")))?;
        Ok(Signer { kid: kid.to_string(), key: SigningKey::Rsa(key, alg) })
    }

    /// A P-256 private key (PKCS#8, DER).
    pub fn es256(kid: &str, pkcs8: &[u8]) -> Result<Signer, Error> {
        Signer::ecdsa(kid, pkcs8, Algorithm::Es256)
    }

    /// A P-384 private key (PKCS#8, DER).
    pub fn es384(kid: &str, pkcs8: &[u8]) -> Result<Signer, Error> {
        Signer::ecdsa(kid, pkcs8, Algorithm::Es384)
    }

    fn ecdsa_algorithm(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
        if alg == Algorithm::Es384 {
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING
        } else {
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING
        }
    }

    fn ecdsa(kid: &str, pkcs8: &[u8], alg: Algorithm) -> Result<Signer, Error> {
        let key = signature::EcdsaKeyPair::from_pkcs8(
            Signer::ecdsa_algorithm(alg),
            pkcs8,
            &rand::SystemRandom::new(),
        )
        .map_err(|e| Error::Invalid(format!("not a {} private key in PKCS#8: {e}", alg.as_str())))?;
        Ok(Signer { kid: kid.to_string(), key: SigningKey::Ecdsa(key, alg) })
    }

    /// A new P-256 key; also returns its PKCS#8 form, to keep it.
    pub fn generate_es256(kid: &str) -> Result<(Signer, Vec<u8>), Error> {
        Signer::generate_ecdsa(kid, Algorithm::Es256)
    }

    /// A new P-384 key; also returns its PKCS#8 form.
    pub fn generate_es384(kid: &str) -> Result<(Signer, Vec<u8>), Error> {
        Signer::generate_ecdsa(kid, Algorithm::Es384)
    }

    fn generate_ecdsa(kid: &str, alg: Algorithm) -> Result<(Signer, Vec<u8>), Error> {
        let pkcs8 =
            signature::EcdsaKeyPair::generate_pkcs8(Signer::ecdsa_algorithm(alg), &rand::SystemRandom::new())
                .map_err(|_| Error::Invalid("no randomness for a new EC key".into()))?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((Signer::ecdsa(kid, &pkcs8, alg)?, pkcs8))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            SigningKey::Rsa(_, alg) | SigningKey::Ecdsa(_, alg) => alg,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, for a JWKS.
    pub fn public_jwk(&self) -> Value {
        let alg = self.algorithm().as_str();
        match &self.key {
            SigningKey::Rsa(key, _) => {
                let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({ "kty": "RSA", "kid": self.kid, "alg": alg, "use": "sig",
                        "n": base64url_encode(&components.n), "e": base64url_encode(&components.e) })
            }
            SigningKey::Ecdsa(key, _) => {
                let point = key.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                let curve = if size == 48 { "P-384" } else { "P-256" };
                json!({ "kty": "EC", "crv": curve, "kid": self.kid, "alg": alg, "use": "sig",
                        "x": base64url_encode(&point[1..1 + size]),
                        "y": base64url_encode(&point[1 + size..]) })
            }
        }
    }

    /// Signs `claims` with a header naming the algorithm and this key's `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, Error> {
        let header = json!({ "alg": self.algorithm().as_str(), "typ": "JWT", "kid": self.kid });
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under the given header as it is (which need not be true to the key:
    /// tests forge headers with it).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, Error> {
        self.sign_parts(
            &base64url_encode(header.to_string().as_bytes()),
            &base64url_encode(claims.to_string().as_bytes()),
        )
    }

    fn sign_parts(&self, header: &str, payload: &str) -> Result<String, Error> {
        let signed = format!("{header}.{payload}");
        let random = rand::SystemRandom::new();
        let signature = match &self.key {
            SigningKey::Rsa(key, alg) => {
                let padding: &dyn signature::RsaEncoding = if *alg == Algorithm::Rs384 {
                    &signature::RSA_PKCS1_SHA384
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut signature = vec![0u8; key.public().modulus_len()];
                key.sign(padding, &random, signed.as_bytes(), &mut signature)
                    .map_err(|_| Error::Invalid("RSA signing failed".into()))?;
                signature
            }
            SigningKey::Ecdsa(key, _) => key
                .sign(&random, signed.as_bytes())
                .map_err(|_| Error::Invalid("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signed}.{}", base64url_encode(&signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_KEY: &[u8] = include_bytes!("../tests/data/test-only-rsa2048-private.pk8");
    const OTHER_RSA_KEY: &[u8] = include_bytes!("../tests/data/test-only-rsa2048-other-private.pk8");
    const NOW: i64 = 1_000;

    fn claims() -> Value {
        json!({ "sub": "grey", "scope": "user/*.cruds", "fhirUser": "Practitioner/1", "exp": 2_000 })
    }

    /// A server trusting one RSA and one EC key, and the signers holding them.
    fn server() -> (Verifier, Signer, Signer) {
        let rsa = Signer::rs256("rsa-1", RSA_KEY).unwrap();
        let (ec, _) = Signer::generate_es256("ec-1").unwrap();
        let jwks = json!({ "keys": [rsa.public_jwk(), ec.public_jwk()] });
        let verifier = Verifier::from(Jwks::from_json(jwks.to_string().as_bytes()).unwrap());
        (verifier, rsa, ec)
    }

    fn refused(verifier: &Verifier, token: &str, reason: &str) {
        refused_at(verifier, token, NOW, reason);
    }

    fn refused_at(verifier: &Verifier, token: &str, now: i64, reason: &str) {
        match verifier.authenticate(token, now) {
            Err(Error::Jwt(message)) => assert!(message.contains(reason), "{message} (expected: {reason})"),
            other => panic!("expected a refusal ({reason}), got {other:?}"),
        }
    }

    fn encode(value: &Value) -> String {
        base64url_encode(value.to_string().as_bytes())
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Case 2 (a short key) and case 6 (a key longer than the block, hashed first).
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(crate::hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let mac = hmac(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(crate::hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn valid_hs256_tokens_carry_their_smart_claims_and_bad_ones_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let verifier = Verifier::from(Hs256::new(secret).unwrap());
        let patient = sign(
            secret,
            &json!({ "sub": "alice", "scope": "launch/patient patient/*.rs", "patient": "pa", "exp": 2_000 }),
        );
        let identity = verifier.authenticate(&patient, NOW).unwrap().unwrap();
        assert_eq!(
            (identity.role, identity.patient.as_deref(), identity.user.as_str()),
            (Role::Patient, Some("pa"), "jwt:alice")
        );
        let clinician = sign(secret, &claims());
        let identity = verifier.authenticate(&clinician, NOW).unwrap().unwrap();
        assert_eq!((identity.role, identity.fhir_user.as_deref()), (Role::Clinician, Some("Practitioner/1")));
        refused_at(&verifier, &clinician, 3_000, "expired");
        let forged = sign(
            b"another secret of thirty-two bytes",
            &json!({ "sub": "x", "scope": "system/*.cruds", "exp": 2_000 }),
        );
        refused(&verifier, &forged, "signature does not verify");
        let no_patient = sign(secret, &json!({ "sub": "x", "scope": "patient/*.rs", "exp": 2_000 }));
        refused(&verifier, &no_patient, "patient claim");
        assert!(verifier.authenticate("chr_abc", NOW).unwrap().is_none(), "not a JWT");
        assert!(Hs256::new(b"short").is_err());
        // With only a secret configured, public-key algorithms have nothing to verify with.
        let (_, rsa, _) = server();
        refused(&verifier, &rsa.sign(&claims()).unwrap(), "no JWKS is configured");
    }

    #[test]
    fn valid_rs256_and_es256_tokens_carry_their_smart_claims() {
        let (verifier, rsa, ec) = server();
        let patient = rsa
            .sign(&json!({ "sub": "alice", "scope": "launch/patient patient/*.rs", "patient": "pa",
                          "exp": 2_000, "nbf": 900 }))
            .unwrap();
        let identity = verifier.authenticate(&patient, NOW).unwrap().unwrap();
        assert_eq!(
            (identity.role, identity.patient.as_deref(), identity.user.as_str()),
            (Role::Patient, Some("pa"), "jwt:alice")
        );
        let officer = ec
            .sign(&json!({ "sub": "pat", "scope": "user/*.rs", "role": "privacy-officer", "exp": 2_000 }))
            .unwrap();
        let identity = verifier.authenticate(&officer, NOW).unwrap().unwrap();
        assert_eq!((identity.role, identity.user.as_str()), (Role::PrivacyOfficer, "jwt:pat"));
        assert!(identity.scopes.permit(crate::Interaction::Read, "Observation"));
        // Without a kid, the only key of the right type is used.
        let no_kid = rsa.sign_with_header(&json!({ "alg": "RS256" }), &claims()).unwrap();
        assert_eq!(verifier.authenticate(&no_kid, NOW).unwrap().unwrap().user, "jwt:grey");
        let no_kid = ec.sign_with_header(&json!({ "alg": "ES256", "typ": "JWT" }), &claims()).unwrap();
        assert_eq!(verifier.authenticate(&no_kid, NOW).unwrap().unwrap().role, Role::Clinician);
    }

    #[test]
    fn forged_expired_and_malformed_public_key_tokens_are_refused() {
        let (verifier, rsa, ec) = server();
        for signer in [&rsa, &ec] {
            let token = signer.sign(&claims()).unwrap();
            // The payload changed after signing: a wider scope.
            let parts: Vec<&str> = token.split('.').collect();
            let mut wider = claims();
            wider["scope"] = Value::from("system/*.cruds");
            refused(&verifier, &format!("{}.{}.{}", parts[0], encode(&wider), parts[2]), "does not verify");
            refused(&verifier, &token.replacen('.', ".x", 1), "does not verify");
            refused_at(&verifier, &token, 2_000, "expired");
            let mut early = claims();
            early["nbf"] = Value::from(1_500);
            refused(&verifier, &signer.sign(&early).unwrap(), "not valid yet");
            let mut forever = claims();
            forever.as_object_mut().unwrap().remove("exp");
            refused(&verifier, &signer.sign(&forever).unwrap(), "no exp");
            let header = json!({ "alg": signer.algorithm().as_str(), "kid": "rotated-away" });
            refused(&verifier, &signer.sign_with_header(&header, &claims()).unwrap(), "kid rotated-away");
        }
        // The right kid, another key.
        let impostor = Signer::rs256("rsa-1", OTHER_RSA_KEY).unwrap();
        refused(&verifier, &impostor.sign(&claims()).unwrap(), "does not verify");
        let (impostor, _) = Signer::generate_es256("ec-1").unwrap();
        refused(&verifier, &impostor.sign(&claims()).unwrap(), "does not verify");
        // An RS256 header on the EC key, and the reverse.
        let header = json!({ "alg": "RS256", "kid": "ec-1" });
        refused(&verifier, &rsa.sign_with_header(&header, &claims()).unwrap(), "does not fit");
        let header = json!({ "alg": "ES256", "kid": "rsa-1" });
        refused(&verifier, &ec.sign_with_header(&header, &claims()).unwrap(), "does not fit");
        // Unsigned.
        let unsigned = format!("{}.{}.", encode(&json!({ "alg": "none", "typ": "JWT" })), encode(&claims()));
        refused(&verifier, &unsigned, "alg none");
        let unsigned = format!("{}.{}.", encode(&json!({ "alg": "None" })), encode(&claims()));
        refused(&verifier, &unsigned, "alg none");
        refused(&verifier, &format!("{}.{}.", encode(&json!({})), encode(&claims())), "no alg");
        let exotic = format!("{}.{}.c2ln", encode(&json!({ "alg": "HS512" })), encode(&claims()));
        refused(&verifier, &exotic, "not supported");
        let critical = rsa
            .sign_with_header(
                &json!({ "alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1 }),
                &claims(),
            )
            .unwrap();
        refused(&verifier, &critical, "crit");
        // Key confusion: HS256 "signed" with the public modulus, which anyone can read.
        let modulus = base64url_decode(rsa.public_jwk()["n"].as_str().unwrap()).unwrap();
        let header = encode(&json!({ "alg": "HS256", "kid": "rsa-1" }));
        let signed = format!("{header}.{}", encode(&claims()));
        let confused = format!("{signed}.{}", base64url_encode(&hmac(&modulus, signed.as_bytes())));
        refused(&verifier, &confused, "no shared secret is configured");
        // ...and still refused when a secret is configured too: it is not the secret.
        let both = Verifier::from(
            Jwks::from_json(json!({ "keys": [rsa.public_jwk()] }).to_string().as_bytes()).unwrap(),
        )
        .with_hs256(Hs256::new(b"0123456789abcdef0123456789abcdef").unwrap());
        refused(&both, &confused, "does not verify");
        // An ECDSA signature in DER (ASN.1), as a non-JOSE library would write it.
        let (ec, pkcs8) = Signer::generate_es256("ec-der").unwrap();
        let der_key = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &rand::SystemRandom::new(),
        )
        .unwrap();
        let verifier = Verifier::from(
            Jwks::from_json(json!({ "keys": [ec.public_jwk()] }).to_string().as_bytes()).unwrap(),
        );
        assert!(verifier.authenticate(&ec.sign(&claims()).unwrap(), NOW).unwrap().is_some());
        let signed = format!("{}.{}", encode(&json!({ "alg": "ES256", "kid": "ec-der" })), encode(&claims()));
        let der = der_key.sign(&rand::SystemRandom::new(), signed.as_bytes()).unwrap();
        refused(&verifier, &format!("{signed}.{}", base64url_encode(der.as_ref())), "does not verify");
        // Malformed parts.
        refused(&verifier, "!!.e30.e30", "header is not base64url");
        refused(&verifier, &format!("{}.e30.e30", base64url_encode(b"{not json")), "header is not JSON");
        refused(&verifier, &format!("{}.e30.e30", encode(&json!(["ES256"]))), "not a JSON object");
        refused(&verifier, &format!("{signed}.%%%"), "signature is not base64url");
        // Signed, but not claims.
        let header = encode(&json!({ "alg": "ES256" }));
        refused(
            &verifier,
            &ec.sign_parts(&header, &base64url_encode(b"[1,")).unwrap(),
            "payload is not JSON",
        );
        refused(
            &verifier,
            &ec.sign_parts(&header, &encode(&json!("claims"))).unwrap(),
            "payload is not a JSON object",
        );
        let mut odd = claims();
        odd["exp"] = Value::from("tomorrow");
        refused(&verifier, &ec.sign(&odd).unwrap(), "exp is not a number");
        odd["exp"] = json!(1999.5);
        assert!(verifier.authenticate(&ec.sign(&odd).unwrap(), NOW).unwrap().is_some(), "fractional exp");
    }

    /// SMART Backend Services clients sign with RS384 or ES384.
    #[test]
    fn rs384_and_es384_tokens_verify_against_their_keys_only() {
        let rsa = Signer::rs384("rsa-384", RSA_KEY).unwrap();
        let (ec, _) = Signer::generate_es384("ec-384").unwrap();
        assert_eq!(ec.public_jwk()["crv"], "P-384");
        let jwks = json!({ "keys": [rsa.public_jwk(), ec.public_jwk()] });
        let verifier = Verifier::from(Jwks::from_json(jwks.to_string().as_bytes()).unwrap());
        for signer in [&rsa, &ec] {
            let token = signer.sign(&claims()).unwrap();
            assert_eq!(verifier.authenticate(&token, NOW).unwrap().unwrap().user, "jwt:grey");
        }
        // An RS384 key's signature presented as RS256 does not verify (the key is for RS384).
        let relabelled =
            rsa.sign_with_header(&json!({ "alg": "RS256", "kid": "rsa-384" }), &claims()).unwrap();
        refused(&verifier, &relabelled, "does not fit its key");
        let (other, _) = Signer::generate_es384("ec-384").unwrap();
        refused(&verifier, &other.sign(&claims()).unwrap(), "signature does not verify");
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let (verifier, rsa, _) = server();
        let verifier = verifier
            .with_issuer("https://auth.example.org")
            .with_audience("https://chartroom.example.org/fhir");
        let mut good = claims();
        good["iss"] = Value::from("https://auth.example.org");
        good["aud"] = json!(["https://other.example.org", "https://chartroom.example.org/fhir"]);
        assert!(verifier.authenticate(&rsa.sign(&good).unwrap(), NOW).unwrap().is_some());
        let mut stranger = good.clone();
        stranger["iss"] = Value::from("https://evil.example.org");
        refused(&verifier, &rsa.sign(&stranger).unwrap(), "not issued by");
        let mut elsewhere = good.clone();
        elsewhere["aud"] = Value::from("https://other.example.org");
        refused(&verifier, &rsa.sign(&elsewhere).unwrap(), "not meant for");
        good.as_object_mut().unwrap().remove("aud");
        refused(&verifier, &rsa.sign(&good).unwrap(), "not meant for");
    }

    #[test]
    fn a_jwks_keeps_only_usable_public_signing_keys() {
        let rsa = Signer::rs256("rsa-1", RSA_KEY).unwrap();
        let (ec, _) = Signer::generate_es256("ec-1").unwrap();
        let parse = |keys: Value| Jwks::from_json(json!({ "keys": keys }).to_string().as_bytes());
        let mut encryption = rsa.public_jwk();
        encryption["use"] = Value::from("enc");
        encryption["kid"] = Value::from("enc-1");
        let mut p384 = ec.public_jwk();
        p384["crv"] = Value::from("P-384");
        p384["kid"] = Value::from("p384");
        let jwks = parse(json!([rsa.public_jwk(), ec.public_jwk(), encryption, p384,
            { "kty": "oct", "k": "c2VjcmV0" }, { "kty": "OKP", "crv": "Ed25519", "x": "AA" }]))
        .unwrap();
        assert_eq!(jwks.len(), 2);
        // Two RSA keys and no kid in the header: which one is meant is not guessed.
        let mut second = Signer::rs256("rsa-2", OTHER_RSA_KEY).unwrap().public_jwk();
        second.as_object_mut().unwrap().remove("alg");
        let verifier = Verifier::from(parse(json!([rsa.public_jwk(), second])).unwrap());
        let no_kid = rsa.sign_with_header(&json!({ "alg": "RS256" }), &claims()).unwrap();
        refused(&verifier, &no_kid, "several configured keys");
        assert!(verifier.authenticate(&rsa.sign(&claims()).unwrap(), NOW).unwrap().is_some());

        let message = |result: Result<Jwks, Error>| result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message(Jwks::from_json(b"{")).contains("not JSON"));
        assert!(message(Jwks::from_json(b"{}")).contains("no \"keys\""));
        assert!(message(parse(json!([]))).contains("no RSA or EC"));
        assert!(
            message(parse(json!([rsa.public_jwk(), rsa.public_jwk()]))).contains("two keys with kid rsa-1")
        );
        let mut private = ec.public_jwk();
        private["d"] = Value::from("AAAA");
        assert!(message(parse(json!([private]))).contains("private key"));
        let mut short = rsa.public_jwk();
        short["n"] = Value::from(base64url_encode(&[0xff; 128]));
        assert!(message(parse(json!([short]))).contains("1024 bits"));
        let mut bent = ec.public_jwk();
        bent["x"] = Value::from("AAAA");
        assert!(message(parse(json!([bent]))).contains("32 bytes"));
        let mut unreadable = rsa.public_jwk();
        unreadable["e"] = Value::from("*");
        assert!(message(parse(json!([unreadable]))).contains("e is not base64url"));
        let path = std::env::temp_dir().join("chartroom-no-such-jwks.json");
        assert!(message(Jwks::load(&path)).contains("cannot read the JWKS"));
    }
}
