//! The warm pool's own cost of handing out a ready sandbox: one `acquire` through the actor
//! (message, queue, liveness check, reply) while the pool refills behind it. The sandboxes
//! come from a stub driver (an in-memory byte stream, a backend that does nothing), named so:
//! what a real sandbox costs to make is `examples/sandbox_timing.rs`'s "create", and what
//! acquiring costs in a real run is the `sandbox_acquire` span of `hearth bench`.
//!
//! `cargo bench -p hearth-sandbox --bench pool`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use hearth_proto::Limits;
use hearth_sandbox::conn::AgentConn;
use hearth_sandbox::sandbox::{Backend, BoxFuture};
use hearth_sandbox::{Driver, Pool, PoolConfig, Sandbox, SandboxError};

struct StubBackend;

impl Backend for StubBackend {
    fn prepare(&mut self, _: &Limits) -> Result<(), SandboxError> {
        Ok(())
    }
    fn oom_kills(&self) -> u64 {
        0
    }
    fn peak_kb(&self) -> u64 {
        0
    }
    fn alive(&mut self) -> bool {
        true
    }
    fn destroy(self: Box<Self>) -> BoxFuture<'static, Result<(), SandboxError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Sandboxes that are only a byte stream: the pool's cost without a sandbox's.
struct StubDriver;

impl Driver for StubDriver {
    fn name(&self) -> &'static str {
        "stub"
    }
    fn create(&self) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(async {
            let (ours, _theirs) = tokio::io::duplex(64);
            let (r, w) = tokio::io::split(ours);
            let conn = AgentConn::new("stub".into(), Box::new(r), Box::new(w));
            Ok(Sandbox::new("stub".into(), conn, Box::new(StubBackend)))
        })
    }
}

fn acquire(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = PoolConfig {
        warm: 8,
        max_creating: 8,
        // No health checks during the measurement (a stub never answers a ping).
        health_interval: Duration::from_secs(3600),
        ..PoolConfig::default()
    };
    let pool = rt.block_on(async { Pool::start(std::sync::Arc::new(StubDriver), config) });
    c.bench_function("pool acquire (stub driver, refilling)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let sb = pool.acquire().await.unwrap();
                    spent += t.elapsed();
                    sb.destroy().await.unwrap();
                }
                spent
            })
        })
    });
    c.bench_function("pool status round trip", |b| b.iter(|| rt.block_on(pool.status()).unwrap()));
    rt.block_on(pool.shutdown());
}

criterion_group!(benches, acquire);
criterion_main!(benches);
