#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Per-detector behaviour: valid, invalid and boundary cases, through the public API.

use portcullis_masking::{MaskReport, Masker, MaskingConfig};

fn masker() -> Masker {
    Masker::with_defaults().unwrap()
}

fn mask(input: &str) -> String {
    let mut r = MaskReport::new();
    masker().mask_str(input, &mut r).into_owned()
}

/// Detector names found in `input`, in order.
fn found(input: &str) -> Vec<String> {
    let m = masker();
    m.find(input.as_bytes())
        .iter()
        .map(|f| f.detector.to_string())
        .collect()
}

#[test]
fn email() {
    assert_eq!(mask("to john.smith@example.com now"), "to [EMAIL] now");
    assert_eq!(mask("<a+b@sub.example.co.uk>"), "<[EMAIL]>");
    assert_eq!(mask("end john@example.com."), "end [EMAIL].");
    assert_eq!(mask("...john@example.com"), "...[EMAIL]");
    assert_eq!(found("user@localhost"), Vec::<String>::new());
    assert_eq!(found("john@@example.com"), Vec::<String>::new());
    assert_eq!(found("@example.com"), Vec::<String>::new());
    assert_eq!(found("john@example.c"), Vec::<String>::new());
}

#[test]
fn card() {
    assert_eq!(mask("card 4111111111111111 ok"), "card [CARD] ok");
    assert_eq!(mask("4111 1111 1111 1111"), "[CARD]");
    assert_eq!(mask("4111-1111-1111-1111"), "[CARD]");
    assert_eq!(mask("amex 378282246310005"), "amex [CARD]");
    assert_eq!(
        mask("19 digits 6011000990139424000"),
        "19 digits 6011000990139424000"
    );
    // Luhn failure: left alone.
    assert_eq!(found("4111111111111112"), Vec::<String>::new());
    // Inside a longer digit run: not a card.
    assert_eq!(found("94111111111111111"), Vec::<String>::new());
    assert_eq!(found("x4111111111111111"), Vec::<String>::new());
    // Mixed separators are not a card.
    assert_eq!(found("4111-1111 1111-1111"), Vec::<String>::new());
}

#[test]
fn failed_card_does_not_hide_a_phone() {
    // 10 digits with spaces: too short for a card; the phone pattern matches.
    assert_eq!(found("555 123 4567"), vec!["phone"]);
    // A Luhn-failing 16-digit run whose prefix is a phone is not masked as a card,
    // and the phone shape that starts at the same place is still tried.
    assert_eq!(found("+1 555 123 4567"), vec!["phone"]);
}

#[test]
fn ssn() {
    assert_eq!(mask("ssn 123-45-6789."), "ssn [SSN].");
    assert_eq!(mask("ssn 123 45 6789"), "ssn [SSN]");
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45-67890",
        "1123-45-6789",
    ] {
        assert_eq!(found(bad), Vec::<String>::new(), "{bad}");
    }
}

#[test]
fn phone() {
    for p in [
        "+14155552671",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "+44 20 7946 0958",
        "+49 30 12345678",
        "1-555-123-4567",
    ] {
        assert_eq!(found(&format!("call {p} now")), vec!["phone"], "{p}");
    }
    assert_eq!(found("+123"), Vec::<String>::new());
    assert_eq!(found("555-1234"), Vec::<String>::new());
    assert_eq!(found("2024-03-01"), Vec::<String>::new());
    assert_eq!(found("555-123-4567-8901-2"), Vec::<String>::new());
}

#[test]
fn iban() {
    assert_eq!(mask("iban GB82WEST12345698765432."), "iban [IBAN].");
    assert_eq!(mask("DE89 3704 0044 0532 0130 00 end"), "[IBAN] end");
    assert_eq!(found("GB82WEST12345698765433"), Vec::<String>::new());
    assert_eq!(found("XGB82WEST12345698765432"), Vec::<String>::new());
}

#[test]
fn ip() {
    assert_eq!(mask("from 192.168.1.20:8080"), "from [IP]:8080");
    assert_eq!(mask("ip 10.0.0.1."), "ip [IP].");
    assert_eq!(found("256.1.1.1"), Vec::<String>::new());
    assert_eq!(found("1.2.3.4.5"), Vec::<String>::new());
    assert_eq!(found("version 1.2.3"), Vec::<String>::new());
    assert_eq!(mask("v6 2001:db8::8a2e:370:7334 x"), "v6 [IP] x");
    assert_eq!(mask("[fe80::1ff:fe23:4567:890a]:22"), "[[IP]]:22");
    assert_eq!(mask("mapped ::ffff:192.0.2.1"), "mapped [IP]");
    assert_eq!(found("at 12:30:45 today"), Vec::<String>::new());
    assert_eq!(found("std::vector and ::1"), Vec::<String>::new());
    assert_eq!(found("1:2:3:4:5:6:7:8:9"), Vec::<String>::new());
}

#[test]
fn aws() {
    assert_eq!(
        mask("key AKIAIOSFODNN7EXAMPLE ok"),
        "key [AWS_ACCESS_KEY] ok"
    );
    assert_eq!(mask("ASIAY34FZKBOKMUTVV7A"), "[AWS_ACCESS_KEY]");
    assert_eq!(found("AKIAIOSFODNN7EXAMPLEX"), Vec::<String>::new());
    assert_eq!(found("AKIAiosfodnn7example"), Vec::<String>::new());
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert_eq!(
        mask(&format!("aws_secret_access_key = {secret}\n")),
        "aws_secret_access_key = [AWS_SECRET_KEY]\n"
    );
    assert_eq!(
        mask(&format!(r#"{{"SecretAccessKey": "{secret}"}}"#)),
        r#"{"SecretAccessKey": "[AWS_SECRET_KEY]"}"#
    );
    assert_eq!(
        mask(&format!("export AWS_SECRET_ACCESS_KEY={secret}")),
        "export AWS_SECRET_ACCESS_KEY=[AWS_SECRET_KEY]"
    );
    // 40 base64 characters without a keyword are not a secret key.
    assert_eq!(found(&format!("value {secret}")), Vec::<String>::new());
}

#[test]
fn jwt() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_eq!(mask(&format!("token={jwt}&x=1")), "token=[JWT]&x=1");
    assert_eq!(
        mask(&format!("unsigned {}.eyJhIjoxfQ.", &jwt[..36])),
        "unsigned [JWT]"
    );
    assert_eq!(
        found("eyJhbGciOiJIUzI1NiJ9 only one segment"),
        Vec::<String>::new()
    );
}

#[test]
fn private_key() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naNHbHD1cT4n8k3E2rK2M=\n-----END RSA PRIVATE KEY-----";
    assert_eq!(
        mask(&format!("key:\n{pem}\nafter")),
        "key:\n[PRIVATE_KEY]\nafter"
    );
    // Escaped newlines inside JSON.
    let json = r#"{"key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n","x":1}"#;
    assert_eq!(mask(json), r#"{"key":"[PRIVATE_KEY]\n","x":1}"#);
    // No END: the block stops at the first byte that cannot be in a PEM body.
    assert_eq!(
        mask("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIr\n; tail"),
        "[PRIVATE_KEY]; tail"
    );
    // Public keys and certificates are not masked.
    assert_eq!(
        found("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"),
        Vec::<String>::new()
    );
}

#[test]
fn api_tokens() {
    for t in [
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "gho_abcdefghijklmnopqrstuvwxyz0123456789",
        "ghs_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-1234567890-0987654321-abcdefghijkl",
        "xoxp-1234567890-0987654321-abcdefghijkl",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "glpat-xxxxXXXXxxxxXXXXxxxx",
    ] {
        assert_eq!(mask(&format!("t={t};")), "t=[TOKEN];", "{t}");
    }
    assert_eq!(found("ghp_short"), Vec::<String>::new());
    assert_eq!(found("sk_live_"), Vec::<String>::new());
    assert_eq!(
        mask("Authorization: Bearer abcdef0123456789.xyz-_~+/=\r\n"),
        "Authorization: Bearer [TOKEN]\r\n"
    );
    assert_eq!(found("the bearer of good news"), Vec::<String>::new());
}

#[test]
fn no_findings_in_plain_text() {
    let text = "The order 12345 shipped on 2024-03-01 at 10:30 for $1,234.56 (qty 7).";
    let mut out = Vec::new();
    let mut r = MaskReport::new();
    assert!(!masker().mask_text(text.as_bytes(), &mut out, &mut r));
    assert!(out.is_empty() && r.is_empty());
}

#[test]
fn custom_detectors() {
    let config: MaskingConfig = toml::from_str(
        r#"
        [detectors]
        email = "redact"
        [[custom]]
        name = "employee_id"
        regex = "EMP-[0-9]{6}"
        [[custom]]
        name = "codename"
        words = ["project zeus", "Bluebird"]
        strategy = { strategy = "redact", label = "SECRET" }
        [[custom]]
        name = "account"
        regex = "ACCT[0-9]{8}"
        validator = "luhn"
        "#,
    )
    .unwrap();
    let m = Masker::new(&config).unwrap();
    let mut r = MaskReport::new();
    assert_eq!(
        m.mask_str(
            "EMP-123456 on PROJECT ZEUS and bluebird, not bluebirds",
            &mut r
        ),
        "[EMPLOYEE_ID] on [SECRET] and [SECRET], not bluebirds"
    );
    assert_eq!(r.get("codename"), 2);
    assert_eq!(
        m.mask_str("ACCT79927398 vs ACCT79927399", &mut r),
        "[ACCOUNT] vs ACCT79927399"
    );
}

#[test]
fn strategies_per_detector() {
    let config: MaskingConfig = toml::from_str(
        r#"
        token_key = "0123456789abcdef0123"
        [detectors]
        email = "token"
        card = { strategy = "partial", keep_last = 4 }
        phone = "null"
        ssn = "off"
        "#,
    )
    .unwrap();
    let m = Masker::new(&config).unwrap();
    let mut r = MaskReport::new();
    let a = m.mask_str(
        "a@example.com 4111-1111-1111-1111 555-123-4567 123-45-6789",
        &mut r,
    );
    let b = m.mask_str("a@example.com", &mut r);
    let tok = b.as_ref();
    assert!(tok.starts_with("tok_") && tok.len() == 28, "{tok}");
    assert_eq!(a, format!("{tok} ****-****-****-1111  123-45-6789"));
    assert_eq!(r.get("email"), 2);
    assert_eq!(r.get("ssn"), 0);
}

#[test]
fn config_errors_name_the_key() {
    let err = |t: &str| {
        let c: MaskingConfig = toml::from_str(t).unwrap();
        Masker::new(&c).unwrap_err().to_string()
    };
    let e = err("[detectors]\nemial = \"redact\"");
    assert!(
        e.contains("detectors.emial") && e.contains("unknown detector"),
        "{e}"
    );
    let e = err("[detectors]\nemail = \"token\"");
    assert!(
        e.contains("token_key") && e.contains("detectors.email"),
        "{e}"
    );
    let e = err("token_key = \"short\"\n[detectors]\nemail = \"token\"");
    assert!(e.contains("token_key") && e.contains("16 bytes"), "{e}");
    let e = err("[[custom]]\nname = \"x\"\nregex = \"a(\"");
    assert!(e.contains("custom[0].regex"), "{e}");
    let e = err("[[custom]]\nname = \"x\"\nregex = \"a*\"");
    assert!(e.contains("custom[0].regex") && e.contains("empty"), "{e}");
    let e = err("[[custom]]\nname = \"email\"\nwords = [\"a\"]");
    assert!(e.contains("custom[0].name"), "{e}");
    let e = err("[[custom]]\nname = \"x\"");
    assert!(e.contains("custom[0]") && e.contains("regex"), "{e}");
    let e = err("[[columns]]\npattern = \"ssn\"\nstrategy = \"off\"");
    assert!(e.contains("columns[0].strategy"), "{e}");
    let e = err("[detectors]\ncard = { strategy = \"redact\", keep_last = 2 }");
    assert!(e.contains("detectors.card.keep_last"), "{e}");
    let e = err("[detectors]\nprivate_key = \"partial\"");
    assert!(e.contains("detectors.private_key"), "{e}");
    // Unknown fields are refused by serde itself.
    assert!(toml::from_str::<MaskingConfig>("detector = 1").is_err());
}

#[test]
fn disabled_masker_changes_nothing() {
    let c: MaskingConfig = toml::from_str("enabled = false").unwrap();
    let m = Masker::new(&c).unwrap();
    assert!(!m.is_active());
    let mut r = MaskReport::new();
    assert_eq!(m.mask_str("john@example.com", &mut r), "john@example.com");
    let mut s = m.stream();
    let mut out = Vec::new();
    s.push(b"john@example.com", &mut out);
    s.finish(&mut out);
    assert_eq!(out, b"john@example.com");
}
