//! Writes the benchmark corpus, or masks a file and reports throughput and findings.
//!
//! ```text
//! cargo run --release -p portcullis-masking --example gen_corpus -- OUT BYTES [--kind rows|text] [--seed N]
//! cargo run --release -p portcullis-masking --example gen_corpus -- --mask FILE [--repeat N] [--spans SPANS.json]
//! ```
//!
//! `--mask` prints one JSON object: bytes, best-of-N seconds, MB/s (10^6 bytes per
//! second, one core) and findings per detector; `--spans` also writes every finding as
//! `[start, end, detector]` (byte offsets) for overlap comparisons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use portcullis_masking::{MaskReport, Masker, corpus};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(file) = arg(&args, "--mask") {
        let data = std::fs::read(&file).expect("read input");
        let repeat: usize = arg(&args, "--repeat").map_or(5, |r| r.parse().expect("--repeat N"));
        let masker = Masker::with_defaults().expect("default masker");
        let mut best = f64::MAX;
        let mut out = Vec::with_capacity(data.len() + 1024);
        let mut report = MaskReport::new();
        for _ in 0..repeat.max(1) {
            out.clear();
            report = MaskReport::new();
            let t = Instant::now();
            masker.mask_text(&data, &mut out, &mut report);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let findings = masker.find(&data);
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &findings {
            *per.entry(f.detector).or_default() += 1;
        }
        if let Some(path) = arg(&args, "--spans") {
            let spans: Vec<(usize, usize, &str)> = findings
                .iter()
                .map(|f| (f.mask_start, f.mask_end, f.detector))
                .collect();
            std::fs::write(&path, serde_json::to_vec(&spans).unwrap()).expect("write spans");
        }
        let json = serde_json::json!({
            "bytes": data.len(),
            "seconds": best,
            "mb_per_s": data.len() as f64 / best / 1e6,
            "findings": per,
            "masked": report.total(),
        });
        println!("{json}");
        return;
    }
    let (Some(out), Some(n)) = (args.first(), args.get(1)) else {
        eprintln!("usage: gen_corpus OUT BYTES [--kind rows|text] [--seed N] | --mask FILE");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("BYTES is a number");
    let seed: u64 = arg(&args, "--seed").map_or(42, |s| s.parse().expect("--seed N"));
    let data = match arg(&args, "--kind").as_deref() {
        None | Some("rows") => corpus::rows(seed, n),
        Some("text") => corpus::free_text(seed, n),
        Some(other) => {
            eprintln!("unknown kind {other}");
            std::process::exit(2);
        }
    };
    std::fs::write(out, &data).expect("write corpus");
    eprintln!("wrote {} bytes to {out}", data.len());
}
