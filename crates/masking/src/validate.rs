//! Validators: cheap checks run on candidate matches only.

use std::net::Ipv6Addr;

/// Checks the Luhn checksum over the ASCII digits of `value`, ignoring any other byte.
///
/// Returns `false` when there are fewer than two digits.
pub fn luhn(value: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for &b in value.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if count % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        count += 1;
    }
    count >= 2 && sum.is_multiple_of(10)
}

/// Checks the ISO 7064 mod-97 checksum of an IBAN-shaped value (spaces ignored):
/// the first four characters move to the end, letters become 10..35, and the number
/// modulo 97 must be 1.
pub fn mod97(value: &[u8]) -> bool {
    let mut n = 0usize;
    let mut head = [0u8; 4];
    let mut rem = 0u32;
    let push = |rem: &mut u32, b: u8| {
        let b = b.to_ascii_uppercase();
        if b.is_ascii_digit() {
            *rem = (*rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            *rem = (*rem * 100 + u32::from(b - b'A') + 10) % 97;
        }
    };
    for &b in value {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return false;
        }
        match head.get_mut(n) {
            Some(h) => *h = b,
            None => push(&mut rem, b),
        }
        n += 1;
    }
    if n < 5 {
        return false;
    }
    for b in head {
        push(&mut rem, b);
    }
    rem == 1
}

/// Payment card: 13 to 19 digits, one kind of separator at most, Luhn-valid, not all one digit.
pub fn card(value: &[u8]) -> bool {
    let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
    if !(13..=19).contains(&digits) {
        return false;
    }
    let mut sep = None;
    for &b in value {
        if b == b' ' || b == b'-' {
            match sep {
                None => sep = Some(b),
                Some(s) if s != b => return false,
                Some(_) => {}
            }
        }
    }
    let first = value.first().copied();
    if value
        .iter()
        .filter(|b| b.is_ascii_digit())
        .all(|b| Some(*b) == first)
    {
        return false;
    }
    luhn(value)
}

/// US social security number `AAA-GG-SSSS` (or with spaces): area not 000, 666 or
/// 900-999, group not 00, serial not 0000.
pub fn ssn(value: &[u8]) -> bool {
    let mut d = [0u32; 9];
    let mut n = 0usize;
    let mut sep = None;
    for &b in value {
        if b.is_ascii_digit() {
            match d.get_mut(n) {
                Some(slot) => *slot = u32::from(b - b'0'),
                None => return false,
            }
            n += 1;
        } else {
            // One separator kind only.
            match sep {
                None => sep = Some(b),
                Some(s) if s != b => return false,
                Some(_) => {}
            }
        }
    }
    if n != 9 {
        return false;
    }
    let [a0, a1, a2, g0, g1, s0, s1, s2, s3] = d;
    let area = a0 * 100 + a1 * 10 + a2;
    let group = g0 * 10 + g1;
    let serial = s0 * 1000 + s1 * 100 + s2 * 10 + s3;
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Phone number: 7 to 15 digits in total (E.164 allows at most 15).
pub fn phone(value: &[u8]) -> bool {
    let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
    if value.first() == Some(&b'+') {
        (8..=15).contains(&digits)
    } else {
        (7..=15).contains(&digits)
    }
}

/// Dotted-quad IPv4 address with octets 0..=255 and no leading zeros.
pub fn ipv4(value: &[u8]) -> bool {
    let mut parts = 0;
    for part in value.split(|b| *b == b'.') {
        parts += 1;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if part.len() > 1 && part.first() == Some(&b'0') {
            return false;
        }
        let v = part.iter().fold(0u32, |a, b| a * 10 + u32::from(b - b'0'));
        if v > 255 {
            return false;
        }
    }
    parts == 4
}

/// IPv6 address (as parsed by the standard library) with at least two groups of hex
/// digits, so that `::` and `::1` alone (and `a::` style tokens in code) are not reported.
pub fn ipv6(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    if s.parse::<Ipv6Addr>().is_err() {
        return false;
    }
    let groups = s
        .split([':', '.'])
        .filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()))
        .count();
    groups >= 2
}

/// E-mail address: local part at most 64 bytes, not starting or ending with a dot, no
/// `..`; domain labels not starting or ending with `-`; whole address at most 254 bytes.
pub fn email(value: &[u8]) -> bool {
    if value.len() > 254 {
        return false;
    }
    let Some(at) = memchr::memrchr(b'@', value) else {
        return false;
    };
    let (local, domain) = (&value[..at], value.get(at + 1..).unwrap_or_default());
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    if local.first() == Some(&b'.') || local.last() == Some(&b'.') {
        return false;
    }
    if local.windows(2).any(|w| w == b"..") {
        return false;
    }
    if domain.is_empty() {
        return false;
    }
    domain.split(|b| *b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"0"));
        assert!(!luhn(b""));
    }

    #[test]
    fn card_rules() {
        assert!(card(b"4111111111111111"));
        assert!(card(b"4111-1111-1111-1111"));
        assert!(card(b"5500 0000 0000 0004"));
        assert!(card(b"378282246310005")); // 15-digit Amex
        assert!(!card(b"4111-1111 1111-1111")); // mixed separators
        assert!(!card(b"0000000000000000")); // Luhn-valid but all one digit
        assert!(!card(b"411111111111")); // 12 digits
        assert!(!card(b"41111111111111111111")); // 20 digits
    }

    #[test]
    fn mod97_known_values() {
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(mod97(b"GB82 WEST 1234 5698 7654 32"));
        assert!(mod97(b"DE89370400440532013000"));
        assert!(!mod97(b"GB82WEST12345698765433"));
        assert!(!mod97(b"GB8"));
        assert!(!mod97(b"GB82-WEST"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn(b"123-45-6789"));
        assert!(ssn(b"123 45 6789"));
        assert!(!ssn(b"000-45-6789"));
        assert!(!ssn(b"666-45-6789"));
        assert!(!ssn(b"900-45-6789"));
        assert!(!ssn(b"999-45-6789"));
        assert!(!ssn(b"123-00-6789"));
        assert!(!ssn(b"123-45-0000"));
        assert!(!ssn(b"123-45 6789"));
        assert!(ssn(b"899-99-9999"));
    }

    #[test]
    fn ip_rules() {
        assert!(ipv4(b"192.168.1.1"));
        assert!(ipv4(b"0.0.0.0"));
        assert!(ipv4(b"255.255.255.255"));
        assert!(!ipv4(b"256.1.1.1"));
        assert!(!ipv4(b"01.1.1.1"));
        assert!(ipv6(b"2001:db8::1"));
        assert!(ipv6(b"fe80::1ff:fe23:4567:890a"));
        assert!(ipv6(b"::ffff:192.0.2.1"));
        assert!(!ipv6(b"::1"));
        assert!(!ipv6(b"::"));
        assert!(!ipv6(b"12:30:45"));
        assert!(!ipv6(b"1:2:3:4:5:6:7:8:9"));
    }

    #[test]
    fn email_rules() {
        assert!(email(b"john.smith@example.com"));
        assert!(email(b"a+tag@sub.example.co.uk"));
        assert!(!email(b".john@example.com"));
        assert!(!email(b"john.@example.com"));
        assert!(!email(b"jo..hn@example.com"));
        assert!(!email(b"john@-example.com"));
        assert!(!email(b"john@example-.com"));
        let long = [b'a'; 65];
        let mut v = long.to_vec();
        v.extend_from_slice(b"@example.com");
        assert!(!email(&v));
    }

    #[test]
    fn phone_rules() {
        assert!(phone(b"+14155552671"));
        assert!(phone(b"(555) 123-4567"));
        assert!(phone(b"+44 20 7946 0958"));
        assert!(!phone(b"+1234567"));
        assert!(!phone(b"+1234567890123456"));
    }
}
