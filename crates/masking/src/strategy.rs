//! Masking strategies and how they rewrite a value.

use hmac::{Hmac, Mac};
use portcullis_core::Secret;
use sha2::Sha256;

use crate::MaskingError;
use crate::config::{StrategySpec, StrategyTable};

/// How a detected value or a masked column is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Replaced by `[LABEL]`.
    Redact {
        /// The label between the brackets.
        label: String,
    },
    /// Every letter or digit but the last `keep_last` becomes `*`; other bytes stay.
    Partial {
        /// Trailing letters/digits kept visible.
        keep_last: usize,
    },
    /// Replaced by `tok_` and the hex of the first 12 bytes of HMAC-SHA256(key, value):
    /// equal values give equal tokens, so joins and grouping still work.
    Token,
    /// SQL NULL for column values; the empty string in free text.
    Null,
    /// Column passes through unscanned (column rules only).
    Keep,
}

/// Where a strategy is used; decides which names are accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Detector,
    PrivateKey,
    Column,
}

impl Strategy {
    /// Compiles a configured strategy; `None` means the detector is off.
    pub(crate) fn compile(
        spec: &StrategySpec,
        key: &str,
        default_label: &str,
        usage: Use,
    ) -> Result<Option<Strategy>, MaskingError> {
        let table;
        let t = match spec {
            StrategySpec::Name(name) => {
                table = StrategyTable {
                    strategy: name.clone(),
                    keep_last: None,
                    label: None,
                };
                &table
            }
            StrategySpec::Detailed(t) => t,
        };
        if t.keep_last.is_some() && t.strategy != "partial" {
            return Err(MaskingError::config(
                format!("{key}.keep_last"),
                "only the `partial` strategy takes `keep_last`",
            ));
        }
        if t.label.is_some() && t.strategy != "redact" {
            return Err(MaskingError::config(
                format!("{key}.label"),
                "only the `redact` strategy takes `label`",
            ));
        }
        let strategy = match t.strategy.as_str() {
            "redact" => {
                let label = t.label.clone().unwrap_or_else(|| default_label.to_string());
                if label.is_empty()
                    || !label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(MaskingError::config(
                        format!("{key}.label"),
                        "a label is 1 or more ASCII letters, digits, `_` or `-`",
                    ));
                }
                Strategy::Redact { label }
            }
            "partial" => Strategy::Partial {
                keep_last: t.keep_last.unwrap_or(4),
            },
            "token" => Strategy::Token,
            "null" => Strategy::Null,
            "off" if usage != Use::Column => return Ok(None),
            "keep" if usage == Use::Column => Strategy::Keep,
            other => {
                let known = match usage {
                    Use::Column => "redact, partial, token, null, keep",
                    Use::Detector | Use::PrivateKey => "redact, partial, token, null, off",
                };
                return Err(MaskingError::config(
                    key,
                    format!("unknown strategy `{other}` (expected one of: {known})"),
                ));
            }
        };
        if usage == Use::PrivateKey
            && matches!(strategy, Strategy::Partial { .. } | Strategy::Token)
        {
            return Err(MaskingError::config(
                key,
                "private keys can only be redacted or nulled: a partial or token form needs the whole \
                 block, which streaming masking does not hold",
            ));
        }
        Ok(Some(strategy))
    }
}

/// The token key, ready to clone per value.
#[derive(Clone)]
pub(crate) struct TokenKey(Hmac<Sha256>);

impl TokenKey {
    pub(crate) fn new(key: &Secret<String>) -> Result<TokenKey, MaskingError> {
        let bytes = key.expose().as_bytes();
        if bytes.len() < 16 {
            return Err(MaskingError::config(
                "token_key",
                "must be at least 16 bytes long",
            ));
        }
        Hmac::<Sha256>::new_from_slice(bytes)
            .map(TokenKey)
            .map_err(|_| MaskingError::config("token_key", "not usable as an HMAC key"))
    }

    fn token(&self, value: &[u8], out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.0.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        out.extend_from_slice(b"tok_");
        for b in digest.iter().take(12) {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
    }
}

/// Writes the masked form of `value` to `out`. `Keep` writes the value unchanged.
pub(crate) fn render(strategy: &Strategy, value: &[u8], key: Option<&TokenKey>, out: &mut Vec<u8>) {
    match strategy {
        Strategy::Redact { label } => {
            out.push(b'[');
            out.extend_from_slice(label.as_bytes());
            out.push(b']');
        }
        Strategy::Partial { keep_last } => {
            let alnum = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
            let hide = alnum.saturating_sub(*keep_last);
            let mut seen = 0usize;
            for &b in value {
                if b.is_ascii_alphanumeric() {
                    out.push(if seen < hide { b'*' } else { b });
                    seen += 1;
                } else if b.is_ascii() {
                    out.push(b);
                } else if hide > 0 {
                    // Non-ASCII bytes are hidden too, so no character leaks through a partial mask.
                    out.push(b'*');
                } else {
                    out.push(b);
                }
            }
        }
        Strategy::Token => match key {
            Some(k) => k.token(value, out),
            // Compilation refuses `token` without a key; fail closed regardless.
            None => out.extend_from_slice(b"[REDACTED]"),
        },
        Strategy::Null => {}
        Strategy::Keep => out.extend_from_slice(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &Strategy, v: &str) -> String {
        let key = TokenKey::new(&Secret::new("0123456789abcdef".to_string())).unwrap();
        let mut out = Vec::new();
        render(s, v.as_bytes(), Some(&key), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn partial_keeps_separators_and_tail() {
        let p = Strategy::Partial { keep_last: 4 };
        assert_eq!(r(&p, "4111 1111 1111 1234"), "**** **** **** 1234");
        assert_eq!(r(&p, "555-123-4567"), "***-***-4567");
        assert_eq!(r(&p, "abc"), "abc");
        assert_eq!(r(&Strategy::Partial { keep_last: 0 }, "a@b.c"), "*@*.*");
    }

    #[test]
    fn token_is_deterministic_and_keyed() {
        let a = r(&Strategy::Token, "john@example.com");
        assert_eq!(a, r(&Strategy::Token, "john@example.com"));
        assert_ne!(a, r(&Strategy::Token, "jane@example.com"));
        assert!(a.starts_with("tok_") && a.len() == 4 + 24);
        let other = TokenKey::new(&Secret::new("fedcba9876543210".to_string())).unwrap();
        let mut out = Vec::new();
        render(
            &Strategy::Token,
            b"john@example.com",
            Some(&other),
            &mut out,
        );
        assert_ne!(String::from_utf8(out).unwrap(), a);
    }

    #[test]
    fn short_key_is_rejected() {
        let e = TokenKey::new(&Secret::new("short".to_string()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("token_key"));
    }

    #[test]
    fn compile_errors_name_the_key() {
        let e = Strategy::compile(
            &StrategySpec::Name("scramble".into()),
            "detectors.email",
            "EMAIL",
            Use::Detector,
        )
        .unwrap_err();
        assert!(e.to_string().contains("detectors.email") && e.to_string().contains("scramble"));
        let e = Strategy::compile(
            &StrategySpec::Name("token".into()),
            "detectors.private_key",
            "PRIVATE_KEY",
            Use::PrivateKey,
        )
        .unwrap_err();
        assert!(e.to_string().contains("private_key"));
        assert_eq!(
            Strategy::compile(&StrategySpec::Name("off".into()), "k", "X", Use::Detector).unwrap(),
            None
        );
    }
}
