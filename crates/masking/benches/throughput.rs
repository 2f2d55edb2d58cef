//! Throughput of the masking engine against a combined-regex baseline.
//!
//! `cargo bench -p portcullis-masking --bench throughput -- --warm-up-time 1 --measurement-time 3`
//!
//! Corpora (deterministic, seeded): ~16 MiB of tab-separated customer/order rows with
//! names, e-mails, phones, card numbers, SSNs, amounts, dates and free-text notes; and
//! ~16 MiB of prose with rare sensitive values. Throughput is single-threaded (per core).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_masking::{MaskReport, Masker, corpus};

#[path = "support/baseline.rs"]
#[allow(dead_code)]
mod baseline;

const SIZE: usize = 16 << 20;

fn bench(c: &mut Criterion) {
    let masker = Masker::with_defaults().unwrap();
    let base = baseline::Baseline::new();
    let rows = corpus::rows(42, SIZE);
    let text = corpus::free_text(7, SIZE);

    for (name, data) in [("rows", &rows), ("free_text", &text)] {
        // Sanity: both find things, and report counts once.
        let mut out = Vec::new();
        let mut report = MaskReport::new();
        masker.mask_text(data, &mut out, &mut report);
        let mut bout = Vec::new();
        let bn = base.mask(data, &mut bout);
        eprintln!(
            "{name}: {} bytes; portcullis masked {} values {:?}; baseline masked {bn}",
            data.len(),
            report.total(),
            report.counts()
        );

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.sample_size(10);
        g.bench_function("portcullis", |b| {
            let mut out = Vec::with_capacity(data.len() + 1024);
            b.iter(|| {
                out.clear();
                let mut r = MaskReport::new();
                black_box(masker.mask_text(black_box(data), &mut out, &mut r));
            })
        });
        g.bench_function("portcullis_stream_64k", |b| {
            let mut out = Vec::with_capacity(data.len() + 1024);
            b.iter(|| {
                out.clear();
                let mut s = masker.stream();
                for chunk in data.chunks(64 << 10) {
                    s.push(chunk, &mut out);
                }
                s.finish(&mut out);
                black_box(out.len());
            })
        });
        g.bench_function("regex_baseline", |b| {
            let mut out = Vec::with_capacity(data.len() + 1024);
            b.iter(|| {
                out.clear();
                black_box(base.mask(black_box(data), &mut out));
            })
        });
        g.finish();
    }

    // Field by field, as the PostgreSQL hook sees rows.
    let fields: Vec<&[u8]> = rows
        .split(|b| *b == b'\n')
        .flat_map(|line| line.split(|b| *b == b'\t'))
        .collect();
    let mut g = c.benchmark_group("rows_per_field");
    g.throughput(Throughput::Bytes(rows.len() as u64));
    g.sample_size(10);
    g.bench_function("portcullis", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let mut r = MaskReport::new();
            for f in &fields {
                out.clear();
                black_box(masker.mask_text(f, &mut out, &mut r));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
