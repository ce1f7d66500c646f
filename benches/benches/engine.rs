//! Engine + durable journal, in process: holds/s on one hot pool and across 1,000 pools,
//! through the same `Engine::hold` the gateway calls (actor decision, group commit with
//! fsync, read-model read), and the bare pool state machine for comparison.
//!
//! `cargo bench -p benches --bench engine` (set `BENCH_HOLDS` to change the count,
//! `BENCH_POOLS=1` or `1000` to run one case).

use benches::{Fixture, default_journal, quantiles_ms};
use engine::ids::{EventId, PoolId, RegistrationId, TicketTypeId};
use engine::model::{Attendee, EventStatus};
use engine::pool::{HoldCommand, PoolCommand, PoolState};
use std::time::Instant;

fn main() {
    let total: usize = benches::env_count("BENCH_HOLDS", 200_000);
    let runtime = benches::runtime();
    runtime.block_on(async {
        let only_pools = std::env::var("BENCH_POOLS").ok().and_then(|v| v.parse().ok());
        for (pools, concurrency) in [(1usize, 512usize), (1, 4_096), (1_000, 1_024), (1_000, 4_096)] {
            if only_pools.is_some_and(|p: usize| p != pools) {
                continue;
            }
            let fixture = Fixture::new(pools, 10_000_000, default_journal()).await;
            fixture.holds(total / 10, concurrency).await; // warm-up
            let cpu = benches::cpu_seconds();
            let (elapsed, latency) = fixture.holds(total, concurrency).await;
            println!(
                "engine/durable_holds pools={pools:<5} concurrency={concurrency:<5} {total} holds in {:.2}s = {:>9.0} holds/s  {}  {}",
                elapsed.as_secs_f64(),
                total as f64 / elapsed.as_secs_f64(),
                quantiles_ms(&latency),
                benches::cpu_per_op(cpu, benches::cpu_seconds(), total)
            );
            fixture.close().await;
        }
    });
    // The decision alone: PoolState::execute, no actor, no journal.
    let event_id = EventId::new();
    let mut pool = PoolState::new(event_id, PoolId::new(), 10_000_000);
    let attendee = Attendee {
        name: "Bench Buyer".into(),
        email: "buyer@example.com".into(),
    };
    let now = chrono::Utc::now();
    let n = 1_000_000;
    let started = Instant::now();
    for _ in 0..n {
        let command = PoolCommand::Hold(Box::new(HoldCommand {
            registration_id: RegistrationId::new(),
            event_id,
            ticket_type_id: TicketTypeId(uuid::Uuid::nil()),
            quantity: 1,
            attendee: attendee.clone(),
            user_id: None,
            max_per_account: None,
            ttl: chrono::Duration::hours(1),
            idempotency: None,
            unit_price_minor: 1_000,
            currency: "EUR".into(),
            voucher: None,
            tax: None,
            payment_due_after: None,
        }));
        let (events, outcome) = pool.execute(command, EventStatus::Published, now);
        assert!(outcome.is_ok() && events.len() == 1);
    }
    let elapsed = started.elapsed();
    println!(
        "engine/pool_state_decisions {n} holds in {:.2}s = {:>9.0} decisions/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}
