//! Measures what a private cluster and a PgBouncer cost to start and stop.
//!
//! `cargo run -p portcullis-testkit --example start_cost [rounds]`

use std::time::Instant;

use portcullis_testkit::{PgBouncer, PgBouncerOptions, PgCluster, PgOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    for round in 1..=rounds {
        let t = Instant::now();
        let pg = PgCluster::start(PgOptions::default())?;
        let started = t.elapsed();
        let t = Instant::now();
        let bouncer = PgBouncer::start(&pg, PgBouncerOptions::default())?;
        let bouncer_started = t.elapsed();
        let t = Instant::now();
        bouncer.stop()?;
        let bouncer_stopped = t.elapsed();
        let t = Instant::now();
        pg.stop()?;
        let stopped = t.elapsed();
        println!(
            "round {round}: cluster start {started:?}, pgbouncer start {bouncer_started:?}, pgbouncer stop {bouncer_stopped:?}, cluster stop {stopped:?}"
        );
    }
    Ok(())
}
