#!/usr/bin/env python3
"""Compare Portcullis masking with Microsoft Presidio on the same synthetic corpus.

Usage (from the repository root):

    python3 benches/masking/presidio_compare.py [--bytes 300000] [--kind rows|text] [--seed 42]

What it does:

1. Creates (once) a virtualenv under $PRESIDIO_VENV (default /tmp/portcullis-presidio-venv)
   with presidio-analyzer and presidio-anonymizer, and re-runs itself inside it.
2. Writes the corpus with the Rust generator:
   `cargo run --release -p portcullis-masking --example gen_corpus -- OUT BYTES --kind K --seed S`
   (the same generator the criterion bench uses).
3. Runs Presidio's *pattern* recognizers only (e-mail, credit card, US SSN, phone, IBAN,
   IP address), called directly with `nlp_artifacts=None`: no spaCy or other language
   model is loaded. Then anonymizes with the `replace` operator. Times analyze+anonymize.
4. Runs Portcullis over the same file (`gen_corpus --mask FILE --spans SPANS.json`),
   which prints best-of-N MB/s and findings as JSON.
5. Prints both throughputs, the ratio, findings per type and their overlap.

Presidio is slow: a few hundred KB is enough. Offsets are compared as byte offsets; the
corpus is ASCII, so they equal Python string offsets.
"""

import argparse
import json
import os
import subprocess
import sys
import time

VENV = os.environ.get("PRESIDIO_VENV", "/tmp/portcullis-presidio-venv")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Presidio entity -> Portcullis detector names.
TYPES = {
    "EMAIL_ADDRESS": ["email"],
    "CREDIT_CARD": ["card"],
    "US_SSN": ["ssn"],
    "PHONE_NUMBER": ["phone"],
    "IBAN_CODE": ["iban"],
    "IP_ADDRESS": ["ipv4", "ipv6"],
}


def ensure_venv():
    """Re-executes inside a virtualenv that has Presidio installed."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    probe = subprocess.run([python, "-c", "import presidio_analyzer, presidio_anonymizer"])
    if probe.returncode != 0:
        subprocess.check_call(
            [python, "-m", "pip", "install", "-q", "presidio-analyzer", "presidio-anonymizer"]
        )
    os.execv(python, [python] + sys.argv)


def run_presidio(text):
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig

    recognizers = [
        EmailRecognizer(),
        CreditCardRecognizer(),
        UsSsnRecognizer(),
        PhoneRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
    ]
    anonymizer = AnonymizerEngine()
    t0 = time.perf_counter()
    results = []
    for r in recognizers:
        # Pattern recognizers work without NLP artifacts: no language model is involved.
        results.extend(r.analyze(text=text, entities=r.supported_entities, nlp_artifacts=None))
    t1 = time.perf_counter()
    anonymized = anonymizer.anonymize(
        text=text,
        analyzer_results=results,
        operators={"DEFAULT": OperatorConfig("replace")},
    )
    t2 = time.perf_counter()
    return results, anonymized.text, t1 - t0, t2 - t1


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def main():
    ensure_venv()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bytes", type=int, default=300_000)
    ap.add_argument("--kind", choices=["rows", "text"], default="rows")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="/tmp/portcullis-presidio")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    corpus = os.path.join(args.out, f"corpus-{args.kind}-{args.seed}-{args.bytes}.txt")
    spans_file = corpus + ".spans.json"

    cargo = ["cargo", "run", "-q", "--release", "-p", "portcullis-masking", "--example", "gen_corpus", "--"]
    subprocess.check_call(cargo + [corpus, str(args.bytes), "--kind", args.kind, "--seed", str(args.seed)], cwd=ROOT)
    pc = json.loads(
        subprocess.check_output(cargo + ["--mask", corpus, "--repeat", "20", "--spans", spans_file], cwd=ROOT)
    )
    with open(spans_file) as f:
        pc_spans = json.load(f)
    with open(corpus, encoding="utf-8") as f:
        text = f.read()

    results, _, t_an, t_anon = run_presidio(text)
    size = len(text.encode("utf-8"))
    pr_mbs = size / (t_an + t_anon) / 1e6

    print(f"corpus: {args.kind}, {size} bytes, seed {args.seed}")
    print(f"presidio  (pattern recognizers, analyze+anonymize): {pr_mbs:10.3f} MB/s "
          f"(analyze {t_an:.2f}s, anonymize {t_anon:.2f}s)")
    print(f"portcullis (all detectors, mask, best of 20):        {pc['mb_per_s']:10.3f} MB/s")
    print(f"ratio portcullis/presidio: {pc['mb_per_s'] / pr_mbs:,.0f}x")
    print()
    print(f"{'type':<14}{'presidio':>10}{'portcullis':>12}{'P in PC':>10}{'PC in P':>10}")
    for entity, names in TYPES.items():
        p = sorted((r.start, r.end) for r in results if r.entity_type == entity)
        q = sorted((s, e) for s, e, d in pc_spans if d in names)
        p_in_q = sum(1 for a in p if any(overlaps(a, b) for b in q))
        q_in_p = sum(1 for b in q if any(overlaps(a, b) for a in p))
        print(f"{entity:<14}{len(p):>10}{len(q):>12}{p_in_q:>10}{q_in_p:>10}")
    other = sorted({d for _, _, d in pc_spans} - {n for v in TYPES.values() for n in v})
    for d in other:
        print(f"{'(' + d + ')':<14}{'-':>10}{sum(1 for s in pc_spans if s[2] == d):>12}")
    print("\nP in PC: Presidio findings overlapped by a Portcullis finding of the same type;")
    print("PC in P: the reverse. Presidio scores are not thresholded (weak patterns included).")


if __name__ == "__main__":
    main()
