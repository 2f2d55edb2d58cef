//! Deterministic synthetic corpora for benchmarks and comparisons.
//!
//! The same seed always gives the same bytes (the generator is a self-contained
//! SplitMix64, independent of any RNG crate's version), so the benchmark, the
//! superset test and the Presidio comparison all read identical data.

/// SplitMix64: tiny, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `true` with probability `pct`/100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// One element of a non-empty slice (the first when empty is impossible).
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let n = items.len() as u64;
        items
            .get(usize::try_from(self.below(n)).unwrap_or(0))
            .copied()
            .unwrap_or("")
    }

    fn digits(&mut self, n: usize, out: &mut String) {
        for _ in 0..n {
            out.push(char::from(b'0' + u8::try_from(self.below(10)).unwrap_or(0)));
        }
    }
}

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Amelie",
    "Lukas",
    "Sofia",
    "Mateo",
    "Aiko",
    "Chen",
    "Priya",
    "Omar",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Mueller",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "example.co.uk",
    "shop.example.io",
];
const WORDS: &[&str] = &[
    "the",
    "customer",
    "asked",
    "about",
    "a",
    "refund",
    "for",
    "order",
    "and",
    "we",
    "agreed",
    "to",
    "send",
    "replacement",
    "parts",
    "next",
    "week",
    "please",
    "call",
    "back",
    "after",
    "review",
    "of",
    "account",
    "status",
    "shipping",
    "was",
    "delayed",
    "by",
    "carrier",
    "invoice",
    "paid",
    "in",
    "full",
    "pending",
    "approval",
    "from",
    "manager",
    "note",
    "that",
    "address",
    "changed",
    "last",
    "month",
    "contract",
    "renewal",
    "is",
    "due",
    "on",
    "ticket",
    "escalated",
    "support",
    "team",
    "confirmed",
    "delivery",
    "window",
    "between",
    "morning",
    "afternoon",
    "with",
    "no",
    "further",
    "issues",
    "reported",
    "system",
    "log",
    "shows",
    "timeout",
    "while",
    "processing",
    "batch",
    "job",
    "retry",
    "succeeded",
    "later",
    "warehouse",
    "stock",
    "level",
];

fn card(rng: &mut Rng) -> String {
    let (prefix, len) = match rng.below(4) {
        0 => ("4", 16),
        1 => ("5", 16),
        2 => ("37", 15),
        _ => ("6011", 16),
    };
    let mut d = String::from(prefix);
    rng.digits(len - prefix.len() - 1, &mut d);
    // Luhn check digit.
    let mut sum = 0u32;
    for (i, c) in d.bytes().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    let check = (10 - sum % 10) % 10;
    d.push(char::from(b'0' + u8::try_from(check).unwrap_or(0)));
    if rng.chance(20) {
        // A typo: no longer Luhn-valid most of the time.
        d.pop();
        rng.digits(1, &mut d);
    }
    match rng.below(3) {
        0 => d,
        n => {
            let sep = if n == 1 { ' ' } else { '-' };
            let groups: Vec<String> = d
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            groups.join(&sep.to_string())
        }
    }
}

fn phone(rng: &mut Rng) -> String {
    let mut s = String::new();
    match rng.below(5) {
        0 => {
            s.push('(');
            rng.digits(3, &mut s);
            s.push_str(") ");
            rng.digits(3, &mut s);
            s.push('-');
            rng.digits(4, &mut s);
        }
        1 => {
            rng.digits(3, &mut s);
            s.push('-');
            rng.digits(3, &mut s);
            s.push('-');
            rng.digits(4, &mut s);
        }
        2 => {
            s.push_str("+1");
            s.push(char::from(b'2' + u8::try_from(rng.below(8)).unwrap_or(0)));
            rng.digits(9, &mut s);
        }
        3 => {
            s.push_str("+44 20 ");
            rng.digits(4, &mut s);
            s.push(' ');
            rng.digits(4, &mut s);
        }
        _ => {
            s.push_str("+49 30 ");
            rng.digits(8, &mut s);
        }
    }
    s
}

fn ssn(rng: &mut Rng) -> String {
    let area = 1 + rng.below(665);
    let group = 1 + rng.below(99);
    let serial = 1 + rng.below(9999);
    format!("{area:03}-{group:02}-{serial:04}")
}

fn iban(rng: &mut Rng) -> String {
    let mut bban = String::new();
    rng.digits(18, &mut bban);
    // Check digits: 98 - (BBAN + "DE00" as digits) mod 97.
    let mut rem = 0u64;
    for c in bban.bytes().chain(*b"131400") {
        rem = (rem * 10 + u64::from(c - b'0')) % 97;
    }
    let check = 98 - rem;
    let raw = format!("DE{check:02}{bban}");
    if rng.chance(50) {
        raw.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        raw
    }
}

fn email(rng: &mut Rng, first: &str, last: &str) -> String {
    let sep = rng.pick(&[".", "_", ""]);
    format!(
        "{}{sep}{}{}@{}",
        first.to_ascii_lowercase(),
        last.to_ascii_lowercase(),
        if rng.chance(30) {
            rng.below(100).to_string()
        } else {
            String::new()
        },
        rng.pick(DOMAINS)
    )
}

fn ipv4(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        1 + rng.below(223),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
}

fn sentence(rng: &mut Rng, out: &mut String) {
    let n = 6 + rng.below(12);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let w = rng.pick(WORDS);
        if i == 0 {
            let mut cs = w.chars();
            if let Some(c) = cs.next() {
                out.push(c.to_ascii_uppercase());
                out.push_str(cs.as_str());
            }
        } else {
            out.push_str(w);
        }
        if rng.chance(4) {
            out.push_str(&format!(" #{}", 10000 + rng.below(90000)));
        }
    }
    out.push_str(". ");
}

/// A free-text note with a sensitive value now and then.
fn note(rng: &mut Rng, out: &mut String) {
    sentence(rng, out);
    match rng.below(10) {
        0 => {
            let (f, l) = (rng.pick(FIRST), rng.pick(LAST));
            out.push_str(&format!("Reach {f} at {} today. ", email(rng, f, l)));
        }
        1 => out.push_str(&format!("Call back on {}. ", phone(rng))),
        2 => out.push_str(&format!("Login from {} failed twice. ", ipv4(rng))),
        3 => out.push_str(&format!("Refund to IBAN {}. ", iban(rng))),
        _ => {}
    }
}

/// Tab-separated rows like a `SELECT` over a customers/orders join: id, name, e-mail,
/// phone, card, SSN (sometimes), amount, date, status and a free-text note; about
/// `target_bytes` long.
pub fn rows(seed: u64, target_bytes: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(target_bytes + 512);
    let mut id = 100_000u64;
    while s.len() < target_bytes {
        id += 1 + rng.below(5);
        let (f, l) = (rng.pick(FIRST), rng.pick(LAST));
        let mail = email(&mut rng, f, l);
        let ph = phone(&mut rng);
        let cc = card(&mut rng);
        let ss = if rng.chance(30) {
            ssn(&mut rng)
        } else {
            String::from("\\N")
        };
        let amount = format!("{}.{:02}", rng.below(5000), rng.below(100));
        let date = format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        );
        let status = rng.pick(&["paid", "pending", "refunded", "shipped", "cancelled"]);
        s.push_str(&format!(
            "{id}\t{f} {l}\t{mail}\t{ph}\t{cc}\t{ss}\t{amount}\t{date}\t{status}\t"
        ));
        note(&mut rng, &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

/// Paragraphs of plain prose (logs, tickets, chat) where sensitive values are rare;
/// about `target_bytes` long.
pub fn free_text(seed: u64, target_bytes: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(target_bytes + 512);
    while s.len() < target_bytes {
        for _ in 0..(3 + rng.below(6)) {
            sentence(&mut rng, &mut s);
        }
        if rng.chance(25) {
            note(&mut rng, &mut s);
        }
        s.push('\n');
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let a = rows(7, 10_000);
        assert_eq!(a, rows(7, 10_000));
        assert_ne!(a, rows(8, 10_000));
        assert!(a.len() >= 10_000 && a.len() < 11_000);
        let t = free_text(7, 5_000);
        assert!(t.len() >= 5_000);
        assert!(crate::validate::mod97(iban(&mut Rng::new(3)).as_bytes()));
    }
}
