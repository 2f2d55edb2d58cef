#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests: streaming equals one-shot for any chunking; no panics on any bytes.

use std::sync::OnceLock;

use portcullis_masking::{MaskReport, Masker, MaskingConfig};
use proptest::prelude::*;

fn masker() -> &'static Masker {
    static M: OnceLock<Masker> = OnceLock::new();
    M.get_or_init(|| {
        let config: MaskingConfig = toml::from_str(
            r#"
            token_key = "0123456789abcdef0123456789abcdef"
            [detectors]
            private_key = "redact"
            jwt = "redact"
            aws_access_key = "redact"
            aws_secret_key = "redact"
            api_token = "redact"
            bearer_token = "redact"
            email = "token"
            iban = "redact"
            card = { strategy = "partial", keep_last = 4 }
            ssn = "null"
            phone = "redact"
            ipv4 = "redact"
            ipv6 = "redact"
            [[custom]]
            name = "codename"
            words = ["zeus", "blue bird"]
            [[custom]]
            name = "emp"
            regex = "EMP-[0-9]{4,6}"
            "#,
        )
        .unwrap();
        Masker::new(&config).unwrap()
    })
}

fn one_shot(m: &Masker, input: &[u8]) -> (Vec<u8>, MaskReport) {
    let mut out = Vec::new();
    let mut r = MaskReport::new();
    if !m.mask_text(input, &mut out, &mut r) {
        out = input.to_vec();
    }
    (out, r)
}

fn streamed(m: &Masker, input: &[u8], cuts: &[usize]) -> (Vec<u8>, MaskReport) {
    let mut s = m.stream();
    let mut out = Vec::new();
    let mut last = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    for p in points {
        s.push(&input[last..p], &mut out);
        assert!(s.pending() <= portcullis_masking::MAX_MATCH + 200);
        last = p;
    }
    s.push(&input[last..], &mut out);
    s.finish(&mut out);
    (out, s.take_report())
}

const PIECES: &[&str] = &[
    "john.smith@example.com",
    "a@b.co",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "4111111111111112",
    "378282246310005",
    "123-45-6789",
    "666-45-6789",
    "(555) 123-4567",
    "555-123-4567",
    "+44 20 7946 0958",
    "+14155552671",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "192.168.1.20",
    "10.0.0.256",
    "2001:db8::8a2e:370:7334",
    "fe80::1",
    "12:30:45",
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJ\naNHbHD1cT4n8k3E2rK2M=\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-1234567890-abcdefghij",
    "Bearer abcdef0123456789abcdef",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "zeus",
    "Blue Bird",
    "EMP-12345",
    "1234.56",
    "2024-03-01",
    "order #88123",
    " ",
    "\n",
    "\t",
    ".",
    ",",
    ":",
    "@",
    "-",
    "+",
    "(",
    "the customer asked",
    "x",
    "Z9",
    "é",
];

fn piece_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..6),
            1 => "[a-zA-Z0-9 .@:+()-]{0,12}".prop_map(String::into_bytes),
        ],
        0..40,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_one_shot(input in piece_input(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let m = masker();
        let (a, ra) = one_shot(m, &input);
        let (b, rb) = streamed(m, &input, &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        prop_assert_eq!(ra, rb);
    }

    #[test]
    fn streaming_byte_by_byte(input in piece_input()) {
        let m = masker();
        let (a, _) = one_shot(m, &input);
        let cuts: Vec<usize> = (0..input.len()).collect();
        let (b, _) = streamed(m, &input, &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    }

    #[test]
    fn no_panic_on_random_bytes(input in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let m = masker();
        let (a, _) = one_shot(m, &input);
        let (b, _) = streamed(m, &input, &cuts);
        prop_assert_eq!(a, b);
        let _ = m.find(&input);
        let plan = m.plan_columns(&["a"]);
        let mut v = input.clone();
        let _ = plan.mask_field(0, &mut v, &mut MaskReport::new());
    }

    #[test]
    fn masked_output_never_contains_found_values(input in piece_input()) {
        let m = masker();
        let (out, _) = one_shot(m, &input);
        let found = m.find(&input);
        let count = |hay: &[u8], v: &[u8]| hay.windows(v.len()).filter(|w| *w == v).count();
        for f in &found {
            let v = &input[f.mask_start..f.mask_end];
            if v.len() >= 8 {
                // The same value may also sit unmasked elsewhere (where it is not a match,
                // e.g. glued to a word); the masked occurrences must be gone.
                let masked = found.iter().filter(|g| &input[g.mask_start..g.mask_end] == v).count();
                prop_assert!(count(&out, v) + masked <= count(&input, v), "value leaked");
            }
        }
    }

    #[test]
    fn valid_cards_are_always_found(body in prop::collection::vec(0u8..10, 12..18), sep in prop::sample::select(vec!["", " ", "-"])) {
        // Build a Luhn-valid number and check it is masked wherever it sits.
        let mut digits: Vec<u8> = std::iter::once(4u8).chain(body).collect();
        let mut sum = 0u32;
        for (i, d) in digits.iter().rev().enumerate() {
            let mut v = u32::from(*d);
            if i % 2 == 0 { v *= 2; if v > 9 { v -= 9; } }
            sum += v;
        }
        digits.push(u8::try_from((10 - sum % 10) % 10).unwrap());
        prop_assume!(digits.iter().any(|d| *d != digits[0]));
        let s: Vec<String> = digits.chunks(4).map(|c| c.iter().map(|d| char::from(b'0' + d)).collect()).collect();
        let text = format!("pay {} now", s.join(sep));
        let found: Vec<_> = m_find(&text);
        prop_assert!(found.iter().any(|d| d == "card" || d == "phone"), "{text}: {found:?}");
    }
}

fn m_find(text: &str) -> Vec<String> {
    masker()
        .find(text.as_bytes())
        .iter()
        .map(|f| f.detector.to_string())
        .collect()
}

#[test]
fn flush_emits_everything_and_keeps_pem_open() {
    let m = masker();
    let mut s = m.stream();
    let mut out = Vec::new();
    s.push(b"prompt$ ls", &mut out);
    assert_eq!(out, b"prompt$ ");
    s.flush(&mut out);
    assert_eq!(out, b"prompt$ ls");
    s.push(b"\n-----BEGIN PRIVATE KEY-----\nMIIE", &mut out);
    s.flush(&mut out);
    assert!(s.inside_pem());
    s.push(b"abcd\n-----END PRIVATE KEY-----\nok\n", &mut out);
    s.finish(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "prompt$ ls\n[PRIVATE_KEY]\nok\n"
    );
}

#[test]
fn long_pem_block_streams_with_small_carry() {
    let m = masker();
    let mut s = m.stream();
    let mut out = Vec::new();
    s.push(b"-----BEGIN RSA PRIVATE KEY-----\n", &mut out);
    for _ in 0..10_000 {
        s.push(
            b"MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n",
            &mut out,
        );
        assert!(s.pending() < 100);
    }
    s.push(b"-----END RSA PRIVATE KEY-----\ndone\n", &mut out);
    s.finish(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), "[PRIVATE_KEY]\ndone\n");
}
