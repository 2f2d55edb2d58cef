//! The comparison baseline: one combined `regex::bytes::Regex` alternation of the same
//! detectors (named groups), run with `captures_iter`, the same validators applied to
//! each match (Luhn for cards, mod-97, SSN ranges...), and matches replaced by labels.
//! This is how masking is commonly written with the `regex` crate.

use portcullis_masking::validate;
use regex::bytes::{Regex, RegexBuilder};

/// Detector names, in the order of the alternation.
pub const NAMES: &[&str] = &[
    "private_key",
    "jwt",
    "aws_access_key",
    "aws_secret_key",
    "api_token",
    "bearer_token",
    "email",
    "iban",
    "card",
    "ssn",
    "phone",
    "ipv4",
    "ipv6",
];

/// The combined regex and its validators.
pub struct Baseline {
    re: Regex,
}

/// One validated match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Start offset.
    pub start: usize,
    /// End offset.
    pub end: usize,
    /// Detector name.
    pub detector: &'static str,
}

impl Baseline {
    /// Compiles the alternation.
    pub fn new() -> Baseline {
        let parts = [
            r"(?P<private_key>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?s:.)*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)",
            r"(?P<jwt>\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,3})",
            r"(?P<aws_access_key>\b(?:AKIA|ASIA)[A-Z0-9]{16}\b)",
            r#"(?P<aws_secret_key>(?i:aws_secret_access_key|aws_secret_key|aws_secret|secret_access_key|secretaccesskey)["']?[ \t]*(?:[:=]|=>)?[ \t]*["']?[A-Za-z0-9/+]{40}\b)"#,
            r"(?P<api_token>\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|xox[abprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}))",
            r"(?P<bearer_token>\b(?i:bearer)[ \t]+[A-Za-z0-9._~+/-]{16,}=*)",
            r"(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b)",
            r"(?P<iban>\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b)",
            r"(?P<card>\b[0-9](?:[ -]?[0-9]){12,18}\b)",
            r"(?P<ssn>\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b)",
            r"(?P<phone>\+[1-9][0-9]{6,14}\b|\+[1-9][0-9]{0,2}(?:[ .-][0-9]{1,8}){1,5}\b|\+[1-9][0-9]{0,2} ?\([0-9]{1,4}\) ?[0-9]{1,4}(?:[ .-][0-9]{1,4}){1,3}\b|(?:\b1[ .-])?\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}\b|\b(?:1[ .-])?[0-9]{3}-[0-9]{3}-[0-9]{4}\b|\b(?:1[ .-])?[0-9]{3}\.[0-9]{3}\.[0-9]{4}\b|\b(?:1 )?[0-9]{3} [0-9]{3} [0-9]{4}\b)",
            r"(?P<ipv4>\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b)",
            r"(?P<ipv6>(?:[0-9A-Fa-f]{0,4}:){2,6}[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})",
        ];
        let re = RegexBuilder::new(&parts.join("|"))
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .expect("baseline regex compiles");
        Baseline { re }
    }

    fn valid(name: &str, v: &[u8]) -> bool {
        match name {
            "email" => validate::email(v),
            "iban" => validate::mod97(v),
            "card" => validate::card(v),
            "ssn" => validate::ssn(v),
            "phone" => validate::phone(v),
            "ipv4" => validate::ipv4(v),
            "ipv6" => validate::ipv6(v),
            _ => true,
        }
    }

    /// Validated matches.
    pub fn find(&self, input: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        for caps in self.re.captures_iter(input) {
            for name in NAMES {
                if let Some(m) = caps.name(name) {
                    if Self::valid(name, m.as_bytes()) {
                        hits.push(Hit {
                            start: m.start(),
                            end: m.end(),
                            detector: name,
                        });
                    }
                    break;
                }
            }
        }
        hits
    }

    /// Masks `input` into `out` (labels in brackets); returns how many values were replaced.
    pub fn mask(&self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        let mut n = 0;
        for caps in self.re.captures_iter(input) {
            for name in NAMES {
                if let Some(m) = caps.name(name) {
                    if Self::valid(name, m.as_bytes()) {
                        out.extend_from_slice(&input[pos..m.start()]);
                        out.push(b'[');
                        out.extend_from_slice(name.to_ascii_uppercase().as_bytes());
                        out.push(b']');
                        pos = m.end();
                        n += 1;
                    }
                    break;
                }
            }
        }
        out.extend_from_slice(&input[pos..]);
        n
    }
}
