//! JWT verification for one issuer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use portcullis_core::{AuthMethod, Identity, Timestamp};
use serde_json::Value;

use crate::error::{IdentityError, shorten};
use crate::keys::{JwksSource, KeyEntry};

/// What a token says about itself before anything is verified.
pub(crate) struct Unverified {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) iss: String,
}

/// Reads the header and the `iss` claim of a compact JWS without verifying anything.
pub(crate) fn peek(token: &str) -> Result<Unverified, IdentityError> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: Option<String>,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        #[serde(default)]
        iss: Option<Value>,
        #[serde(default)]
        exp: Option<Value>,
        #[serde(default)]
        nbf: Option<Value>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Malformed(
            "a JWT has three dot-separated parts",
        ));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| IdentityError::Malformed("token header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| IdentityError::Malformed("token header is not a JSON object"))?;
    if header.crit.is_some() {
        return Err(IdentityError::Malformed(
            "token header has unsupported critical extensions",
        ));
    }
    let alg = header
        .alg
        .ok_or(IdentityError::Malformed("token header has no alg"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| IdentityError::Malformed("token payload is not base64url"))?;
    let payload: Payload = serde_json::from_slice(&payload)
        .map_err(|_| IdentityError::Malformed("token payload is not a JSON object"))?;
    for (claim, value) in [("exp", &payload.exp), ("nbf", &payload.nbf)] {
        if value.as_ref().is_some_and(|v| !v.is_number()) {
            return Err(IdentityError::InvalidClaim {
                claim: claim.into(),
                reason: "must be a number of seconds since the epoch",
            });
        }
    }
    let iss = match payload.iss {
        None => {
            return Err(IdentityError::MissingClaim {
                claim: "iss".into(),
            });
        }
        Some(Value::String(iss)) => iss,
        Some(_) => {
            return Err(IdentityError::InvalidClaim {
                claim: "iss".into(),
                reason: "must be a string",
            });
        }
    };
    Ok(Unverified {
        alg,
        kid: header.kid,
        iss,
    })
}

/// Finds a claim by exact name, or else by dotted path through nested objects.
pub(crate) fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut current = claims;
    for part in path.split('.') {
        current = current.get(part)?;
    }
    Some(current)
}

/// Which claims carry the subject and the groups.
pub(crate) struct ClaimNames {
    pub(crate) subject: String,
    pub(crate) groups: String,
}

/// Verification settings and keys of one trusted issuer.
pub(crate) struct IssuerVerifier {
    pub(crate) name: String,
    validations: Vec<(Algorithm, Validation)>,
    static_keys: Vec<KeyEntry>,
    pub(crate) jwks: Option<Arc<JwksSource>>,
    subject_claim: String,
    groups_claim: String,
}

/// Outcome of a verification attempt with the keys at hand.
pub(crate) enum Attempt {
    /// Verified.
    Verified(Identity),
    /// No key fits the token's `kid` and algorithm.
    NoKey,
}

impl IssuerVerifier {
    pub(crate) fn new(
        name: String,
        audiences: &[String],
        algorithms: &[Algorithm],
        leeway: Duration,
        static_keys: Vec<KeyEntry>,
        jwks: Option<Arc<JwksSource>>,
        claims: ClaimNames,
    ) -> Self {
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.set_audience(audiences);
                v.set_issuer(&[name.as_str()]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                (*alg, v)
            })
            .collect();
        Self {
            name,
            validations,
            static_keys,
            jwks,
            subject_claim: claims.subject,
            groups_claim: claims.groups,
        }
    }

    /// The pinned validation for the token's header algorithm.
    pub(crate) fn validation_for(
        &self,
        alg: &str,
    ) -> Result<(Algorithm, &Validation), IdentityError> {
        Algorithm::from_str(alg)
            .ok()
            .and_then(|a| self.validations.iter().find(|(v, _)| *v == a))
            .map(|(a, v)| (*a, v))
            .ok_or_else(|| IdentityError::DisallowedAlgorithm {
                issuer: self.name.clone(),
                alg: shorten(alg),
            })
    }

    /// Verifies with the keys currently held; performs no I/O.
    pub(crate) fn attempt(
        &self,
        token: &str,
        header: &Unverified,
    ) -> Result<Attempt, IdentityError> {
        let (alg, validation) = self.validation_for(&header.alg)?;
        let kid = header.kid.as_deref();
        let jwks_keys = self.jwks.as_ref().map(|j| j.keys());
        // A static key with the token's kid wins; static keys without a kid fit any kid.
        let static_exact: Vec<&KeyEntry> = self
            .static_keys
            .iter()
            .filter(|k| k.fits(alg) && kid.is_some() && k.kid.as_deref() == kid)
            .collect();
        let static_keys: Vec<&KeyEntry> = if static_exact.is_empty() {
            self.static_keys
                .iter()
                .filter(|k| k.fits(alg) && (k.kid.is_none() || kid.is_none()))
                .collect()
        } else {
            static_exact
        };
        let jwks: Vec<&KeyEntry> = jwks_keys
            .iter()
            .flat_map(|keys| keys.iter())
            .filter(|k| k.fits(alg) && (kid.is_none() || k.kid.as_deref() == kid))
            .collect();

        let mut bad_signature = false;
        for key in static_keys.into_iter().chain(jwks) {
            match jsonwebtoken::decode::<Value>(token, &key.key, validation) {
                Ok(data) => return self.identity(&data.claims).map(Attempt::Verified),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    bad_signature = true;
                }
                Err(e) => return Err(self.map_error(e.into_kind())),
            }
        }
        if bad_signature {
            Err(IdentityError::BadSignature)
        } else {
            Ok(Attempt::NoKey)
        }
    }

    pub(crate) fn unknown_key(&self, header: &Unverified) -> IdentityError {
        IdentityError::UnknownKey {
            issuer: self.name.clone(),
            kid: header.kid.as_deref().map(shorten),
        }
    }

    fn map_error(&self, kind: ErrorKind) -> IdentityError {
        match kind {
            ErrorKind::InvalidSignature => IdentityError::BadSignature,
            ErrorKind::ExpiredSignature => IdentityError::Expired,
            ErrorKind::ImmatureSignature => IdentityError::NotYetValid,
            ErrorKind::InvalidAudience => IdentityError::WrongAudience {
                issuer: self.name.clone(),
            },
            ErrorKind::InvalidIssuer => IdentityError::UnknownIssuer {
                issuer: self.name.clone(),
            },
            ErrorKind::MissingRequiredClaim(claim) => IdentityError::MissingClaim { claim },
            ErrorKind::InvalidClaimFormat(claim) => IdentityError::InvalidClaim {
                claim,
                reason: "wrong type",
            },
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                IdentityError::DisallowedAlgorithm {
                    issuer: self.name.clone(),
                    alg: "(key mismatch)".into(),
                }
            }
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => IdentityError::Internal(format!(
                "a verification key of issuer {:?} is unusable",
                self.name
            )),
            ErrorKind::Json(_) => IdentityError::Malformed("token payload is not valid JSON"),
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                IdentityError::Malformed("token is not valid base64url")
            }
            _ => IdentityError::Malformed("token rejected"),
        }
    }

    fn identity(&self, claims: &Value) -> Result<Identity, IdentityError> {
        let subject = match claim_at(claims, &self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => {
                return Err(IdentityError::MissingClaim {
                    claim: self.subject_claim.clone(),
                });
            }
            Some(_) => {
                return Err(IdentityError::InvalidClaim {
                    claim: self.subject_claim.clone(),
                    reason: "must be a string",
                });
            }
        };
        let groups = match claim_at(claims, &self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(g)) => vec![g.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(g) => Ok(g.clone()),
                    _ => Err(IdentityError::InvalidClaim {
                        claim: self.groups_claim.clone(),
                        reason: "must be a string or an array of strings",
                    }),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(IdentityError::InvalidClaim {
                    claim: self.groups_claim.clone(),
                    reason: "must be a string or an array of strings",
                });
            }
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| Timestamp((exp * 1_000_000.0) as i64));
        Ok(Identity {
            subject,
            groups,
            method: AuthMethod::Jwt,
            issuer: Some(self.name.clone()),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_paths() {
        let claims = json!({
            "realm_access": {"roles": ["a", "b"]},
            "https://example.com/groups": ["x"],
        });
        assert_eq!(
            claim_at(&claims, "realm_access.roles"),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(
            claim_at(&claims, "https://example.com/groups"),
            Some(&json!(["x"]))
        );
        assert_eq!(claim_at(&claims, "realm_access.missing"), None);
    }

    #[test]
    fn peek_rejects_bad_shapes() {
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        assert!(matches!(peek("a.b"), Err(IdentityError::Malformed(_))));
        assert!(matches!(peek("a.b.c.d"), Err(IdentityError::Malformed(_))));
        let tok = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        assert!(matches!(
            peek(&tok),
            Err(IdentityError::MissingClaim { .. })
        ));
        let tok = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","crit":["x"]}"#),
            b64(r#"{"iss":"x"}"#)
        );
        assert!(matches!(peek(&tok), Err(IdentityError::Malformed(_))));
        let tok = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"none","kid":"k"}"#),
            b64(r#"{"iss":"x"}"#)
        );
        let p = peek(&tok).unwrap();
        assert_eq!(
            (p.alg.as_str(), p.kid.as_deref(), p.iss.as_str()),
            ("none", Some("k"), "x")
        );
    }
}
