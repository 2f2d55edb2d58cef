//! A small case-insensitive glob matcher for column names (`*` and `?`).

/// A compiled column-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: Vec<u8>,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty pattern".into());
        }
        Ok(Glob {
            pattern: pattern.to_ascii_lowercase().into_bytes(),
        })
    }

    /// Whether `name` matches, ignoring ASCII case. Linear-time backtracking on the last `*`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        let p = &self.pattern;
        let (mut pi, mut ni) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ni < name.len() {
            let n = name.get(ni).map(u8::to_ascii_lowercase);
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(b'?') => {
                    pi += 1;
                    ni += 1;
                }
                Some(c) if Some(*c) == n => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p.get(pi..).unwrap_or_default().iter().all(|c| *c == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn globs() {
        assert!(m("*email*", "customer_email"));
        assert!(m("*email*", "EMAIL"));
        assert!(m("*email*", "email_address"));
        assert!(!m("*email*", "mail"));
        assert!(m("ssn", "SSN"));
        assert!(!m("ssn", "ssn2"));
        assert!(m("card_*", "card_number"));
        assert!(!m("card_*", "credit_card"));
        assert!(m("c?rd", "card"));
        assert!(m("*", ""));
        assert!(!m("a", ""));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxxcx"));
    }
}
