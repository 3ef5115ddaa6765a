//! Event encoding on the hot path: each output chunk becomes one `output` event (JSON), each
//! run ends with one `result` event, and the gateway splices `seq` into every event it
//! forwards to a socket.
//!
//! `cargo bench -p hearth-bus --bench event`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth_bus::event;
use hearth_proto::api::{RunResult, Timing};
use hearth_proto::frame::Stream;
use hearth_proto::Status;
use std::hint::black_box;

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("output event");
    for size in [16usize, 4 << 10, 64 << 10] {
        let text = vec![b'a'; size];
        let mut binary = text.clone();
        binary[0] = 0xff;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("utf8", size), &text, |b, data| {
            b.iter(|| {
                event::output(black_box("session-1"), "0190aa00-0000-7000-8000-000000000000", Stream::Stdout, data)
            })
        });
        g.bench_with_input(BenchmarkId::new("binary (base64)", size), &binary, |b, data| {
            b.iter(|| {
                event::output(black_box("session-1"), "0190aa00-0000-7000-8000-000000000000", Stream::Stdout, data)
            })
        });
    }
    g.finish();

    let mut r = RunResult {
        run_id: "0190aa00-0000-7000-8000-000000000000".into(),
        session_id: "session-1".into(),
        lang: "python".into(),
        status: Some(Status::Ok),
        exit_code: Some(0),
        wall_ms: 12,
        cpu_ms: 10,
        memory_kb: 8468,
        timing: Some(Timing { received_us: 1, program_us: 900, prepared: true, ..Timing::default() }),
        ..RunResult::default()
    };
    r.set_outputs(b"1\n", b"", b"");
    let mut g = c.benchmark_group("events");
    g.bench_function("result event", |b| b.iter(|| event::result(black_box(&r))));
    g.bench_function("queued event", |b| b.iter(|| event::queued(black_box("session-1"), "0190aa00")));
    let ev = event::output("session-1", "0190aa00-0000-7000-8000-000000000000", Stream::Stdout, b"1\n");
    g.bench_function("splice seq", |b| b.iter(|| event::with_seq(black_box(&ev), 123_456)));
    g.bench_function("read event head", |b| {
        b.iter(|| serde_json::from_slice::<event::EventHead>(black_box(&ev)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
