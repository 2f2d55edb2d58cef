//! Built-in detectors: their names, labels, patterns, validators and boundaries.

use crate::validate;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// PEM private key blocks (`-----BEGIN ... PRIVATE KEY-----` through `-----END ...-----`).
    PrivateKey,
    /// JSON Web Tokens (three or more base64url segments, the first starting with `eyJ`).
    Jwt,
    /// AWS access key IDs (`AKIA`/`ASIA` + 16 upper-case letters or digits).
    AwsAccessKey,
    /// AWS secret access keys (40 base64 characters) next to a keyword such as `aws_secret`.
    AwsSecretKey,
    /// API tokens by well-known prefix (`ghp_`, `github_pat_`, `xoxb-`, `sk_live_`, `AIza`, `glpat-`...).
    ApiToken,
    /// `Bearer <token>` credentials (only the token is masked).
    BearerToken,
    /// E-mail addresses.
    Email,
    /// IBANs (mod-97 validated, with or without spaces).
    Iban,
    /// Payment card numbers (13-19 digits, Luhn validated).
    Card,
    /// US social security numbers.
    Ssn,
    /// Phone numbers (E.164 and common national formats).
    Phone,
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
}

impl Builtin {
    /// Every built-in detector, in priority order (earlier wins a tie on length).
    pub const ALL: [Builtin; 13] = [
        Builtin::PrivateKey,
        Builtin::Jwt,
        Builtin::AwsAccessKey,
        Builtin::AwsSecretKey,
        Builtin::ApiToken,
        Builtin::BearerToken,
        Builtin::Email,
        Builtin::Iban,
        Builtin::Card,
        Builtin::Ssn,
        Builtin::Phone,
        Builtin::Ipv4,
        Builtin::Ipv6,
    ];

    /// Configuration and report name.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::PrivateKey => "private_key",
            Builtin::Jwt => "jwt",
            Builtin::AwsAccessKey => "aws_access_key",
            Builtin::AwsSecretKey => "aws_secret_key",
            Builtin::ApiToken => "api_token",
            Builtin::BearerToken => "bearer_token",
            Builtin::Email => "email",
            Builtin::Iban => "iban",
            Builtin::Card => "card",
            Builtin::Ssn => "ssn",
            Builtin::Phone => "phone",
            Builtin::Ipv4 => "ipv4",
            Builtin::Ipv6 => "ipv6",
        }
    }

    /// Looks a detector up by its configuration name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Label used by the `redact` strategy (`[EMAIL]`).
    pub fn label(self) -> &'static str {
        match self {
            Builtin::PrivateKey => "PRIVATE_KEY",
            Builtin::Jwt => "JWT",
            Builtin::AwsAccessKey => "AWS_ACCESS_KEY",
            Builtin::AwsSecretKey => "AWS_SECRET_KEY",
            Builtin::ApiToken | Builtin::BearerToken => "TOKEN",
            Builtin::Email => "EMAIL",
            Builtin::Iban => "IBAN",
            Builtin::Card => "CARD",
            Builtin::Ssn => "SSN",
            Builtin::Phone => "PHONE",
            Builtin::Ipv4 | Builtin::Ipv6 => "IP",
        }
    }

    /// Patterns of this detector (ASCII, byte-oriented regex syntax, no look-around).
    pub(crate) fn patterns(self) -> &'static [&'static str] {
        match self {
            // Only the header; the body is consumed by the PEM state machine.
            Builtin::PrivateKey => &[r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"],
            Builtin::Jwt => &[r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,3}"],
            Builtin::AwsAccessKey => &[r"(?:AKIA|ASIA)[A-Z0-9]{16}"],
            Builtin::AwsSecretKey => &[
                r#"(?i:aws_secret_access_key|aws_secret_key|aws_secret|secret_access_key|secretaccesskey)["']?[ \t]*(?:[:=]|=>)?[ \t]*["']?[A-Za-z0-9/+]{40}"#,
            ],
            Builtin::ApiToken => &[
                r"gh[pousr]_[A-Za-z0-9]{30,}",
                r"github_pat_[A-Za-z0-9_]{22,}",
                r"xox[abprs]-[A-Za-z0-9-]{10,}",
                r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
                r"AIza[0-9A-Za-z_-]{35}",
                r"glpat-[A-Za-z0-9_-]{20,}",
            ],
            Builtin::BearerToken => &[r"(?i:bearer)[ \t]+[A-Za-z0-9._~+/-]{16,}=*"],
            Builtin::Email => {
                &[r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"]
            }
            Builtin::Iban => &[r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"],
            Builtin::Card => &[r"[0-9](?:[ -]?[0-9]){12,18}"],
            Builtin::Ssn => &[r"[0-9]{3}-[0-9]{2}-[0-9]{4}", r"[0-9]{3} [0-9]{2} [0-9]{4}"],
            Builtin::Phone => &[
                r"\+[1-9][0-9]{6,14}",
                r"\+[1-9][0-9]{0,2}(?:[ .-][0-9]{1,8}){1,5}",
                r"\+[1-9][0-9]{0,2} ?\([0-9]{1,4}\) ?[0-9]{1,4}(?:[ .-][0-9]{1,4}){1,3}",
                r"(?:1[ .-])?\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}",
                r"(?:1[ .-])?[0-9]{3}-[0-9]{3}-[0-9]{4}",
                r"(?:1[ .-])?[0-9]{3}\.[0-9]{3}\.[0-9]{4}",
                r"(?:1 )?[0-9]{3} [0-9]{3} [0-9]{4}",
            ],
            Builtin::Ipv4 => &[r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"],
            Builtin::Ipv6 => &[
                r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}",
                r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,6}:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            ],
        }
    }

    /// Literal prefixes that start a match of this detector (found by the literal prefilter).
    pub(crate) fn literals(self) -> &'static [&'static str] {
        match self {
            Builtin::PrivateKey => &["-----BEGIN "],
            Builtin::Jwt => &["eyJ"],
            Builtin::AwsAccessKey => &["AKIA", "ASIA"],
            Builtin::AwsSecretKey => &[
                "aws_secret",
                "AWS_SECRET",
                "Aws_Secret",
                "secret_access_key",
                "SECRET_ACCESS_KEY",
                "SecretAccessKey",
                "secretAccessKey",
                "secretaccesskey",
            ],
            Builtin::ApiToken => &[
                "ghp_",
                "gho_",
                "ghu_",
                "ghs_",
                "ghr_",
                "github_pat_",
                "xoxa-",
                "xoxb-",
                "xoxp-",
                "xoxr-",
                "xoxs-",
                "sk_live_",
                "sk_test_",
                "rk_live_",
                "rk_test_",
                "AIza",
                "glpat-",
            ],
            Builtin::BearerToken => &["Bearer", "bearer", "BEARER"],
            _ => &[],
        }
    }

    /// Validator run on a candidate match.
    pub(crate) fn validator(self) -> Validator {
        match self {
            Builtin::Email => Validator::Email,
            Builtin::Iban => Validator::Mod97,
            Builtin::Card => Validator::Card,
            Builtin::Ssn => Validator::Ssn,
            Builtin::Phone => Validator::Phone,
            Builtin::Ipv4 => Validator::Ipv4,
            Builtin::Ipv6 => Validator::Ipv6,
            _ => Validator::None,
        }
    }

    /// What may not touch the match on either side.
    pub(crate) fn boundary(self) -> Boundary {
        match self {
            Builtin::PrivateKey => Boundary::None,
            Builtin::Jwt => Boundary::Token(b"_-."),
            Builtin::AwsAccessKey => Boundary::Token(b""),
            Builtin::AwsSecretKey => Boundary::Secret,
            Builtin::ApiToken => Boundary::Token(b"_-"),
            Builtin::BearerToken => Boundary::Token(b"=._~+/-"),
            Builtin::Email => Boundary::Email,
            Builtin::Iban => Boundary::Token(b""),
            Builtin::Card | Builtin::Ssn | Builtin::Phone | Builtin::Ipv4 => Boundary::Numeric,
            Builtin::Ipv6 => Boundary::Ipv6,
        }
    }

    /// Which part of the match is masked.
    pub(crate) fn value_part(self) -> ValuePart {
        match self {
            Builtin::AwsSecretKey => ValuePart::Last(40),
            Builtin::BearerToken => ValuePart::AfterSpace,
            _ => ValuePart::Whole,
        }
    }
}

/// Validator choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validator {
    None,
    Luhn,
    Mod97,
    Card,
    Ssn,
    Phone,
    Email,
    Ipv4,
    Ipv6,
}

impl Validator {
    pub(crate) fn check(self, value: &[u8]) -> bool {
        match self {
            Validator::None => true,
            Validator::Luhn => validate::luhn(value),
            Validator::Mod97 => validate::mod97(value),
            Validator::Card => validate::card(value),
            Validator::Ssn => validate::ssn(value),
            Validator::Phone => validate::phone(value),
            Validator::Email => validate::email(value),
            Validator::Ipv4 => validate::ipv4(value),
            Validator::Ipv6 => validate::ipv6(value),
        }
    }
}

/// Boundary rule of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// No rule.
    None,
    /// Not preceded or followed by an ASCII letter or digit or one of these bytes.
    Token(&'static [u8]),
    /// Keyword not preceded by a letter or digit; value not followed by a base64 byte.
    Secret,
    /// Whole words: not preceded or followed by an ASCII letter or digit.
    Word,
    /// Not touching letters or digits, nor `-`/`.` followed (or preceded) by a digit.
    Numeric,
    /// Not touching letters, digits, `:` or `.`.
    Ipv6,
    /// Not followed by a letter, digit, `-` or `_`.
    Email,
}

/// The masked part of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValuePart {
    Whole,
    /// The last N bytes.
    Last(usize),
    /// Everything after the first run of spaces or tabs.
    AfterSpace,
}

impl ValuePart {
    /// Offsets of the masked part inside a match of length `len` (`bytes` is the match).
    pub(crate) fn span(self, bytes: &[u8]) -> (usize, usize) {
        let len = bytes.len();
        match self {
            ValuePart::Whole => (0, len),
            ValuePart::Last(n) => (len.saturating_sub(n), len),
            ValuePart::AfterSpace => {
                let sp = bytes
                    .iter()
                    .position(|b| *b == b' ' || *b == b'\t')
                    .unwrap_or(0);
                let start = bytes
                    .iter()
                    .skip(sp)
                    .position(|b| *b != b' ' && *b != b'\t')
                    .map_or(len, |p| p + sp);
                (start, len)
            }
        }
    }
}

fn is_alnum(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric())
}

impl Boundary {
    /// Whether a match may start at `start` (look-behind only; `hay[..start]` is all context known).
    pub(crate) fn left_ok(self, hay: &[u8], start: usize) -> bool {
        let prev = start.checked_sub(1).and_then(|i| hay.get(i).copied());
        let prev2 = start.checked_sub(2).and_then(|i| hay.get(i).copied());
        match self {
            Boundary::None => true,
            Boundary::Token(extra) => !is_alnum(prev) && !prev.is_some_and(|p| extra.contains(&p)),
            Boundary::Secret | Boundary::Word | Boundary::Email => !is_alnum(prev),
            Boundary::Numeric => {
                let after_number =
                    matches!(prev, Some(b'-' | b'.')) && prev2.is_some_and(|b| b.is_ascii_digit());
                !(is_alnum(prev) || after_number)
            }
            Boundary::Ipv6 => !is_alnum(prev) && !matches!(prev, Some(b':' | b'.')),
        }
    }

    /// Whether a match may end at `end`. `None` when more input is needed to tell.
    pub(crate) fn right_ok(self, hay: &[u8], end: usize, eof: bool) -> Option<bool> {
        let next = hay.get(end).copied();
        if next.is_none() {
            return if eof { Some(true) } else { None };
        }
        let next2 = hay.get(end + 1).copied();
        Some(match self {
            Boundary::None => true,
            Boundary::Token(extra) => !is_alnum(next) && !next.is_some_and(|p| extra.contains(&p)),
            Boundary::Secret => {
                !next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
            }
            Boundary::Word => !is_alnum(next),
            Boundary::Email => {
                !next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
            Boundary::Numeric => {
                if is_alnum(next) {
                    false
                } else if matches!(next, Some(b'-' | b'.')) {
                    match next2 {
                        None if !eof => return None,
                        n => !n.is_some_and(|b| b.is_ascii_digit()),
                    }
                } else {
                    true
                }
            }
            Boundary::Ipv6 => {
                if is_alnum(next) || next == Some(b':') {
                    false
                } else if next == Some(b'.') {
                    match next2 {
                        None if !eof => return None,
                        n => !n.is_some_and(|b| b.is_ascii_digit()),
                    }
                } else {
                    true
                }
            }
        })
    }
}

/// All built-in detector names, for error messages.
pub(crate) fn known_names() -> String {
    Builtin::ALL
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}
