//! The agent frame codec on the hot path: every output chunk is one `Output` frame each way
//! of the sandbox boundary, every run one `Run` frame in and one `Result` frame out.
//!
//! `cargo bench -p hearth-proto --bench frame`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth_proto::frame::{self, AgentFrame, AgentResult, AgentRun, FileSpec, Step};
use hearth_proto::{HostFrame, Limits, Status};
use std::hint::black_box;

fn run_frame(code_bytes: usize) -> HostFrame {
    HostFrame::Run(Box::new(AgentRun {
        files: vec![FileSpec { path: ".main.py".into(), data: vec![b'x'; code_bytes], executable: false }],
        compile: None,
        run: Step { argv: vec!["/usr/bin/python3".into(), ".main.py".into()], limits: Limits::DEFAULT },
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("PYTHONUNBUFFERED".into(), "1".into())],
        stdin: b"hello\n".to_vec(),
        keep_stdin_open: false,
        warm_argv: Some(vec![".main.py".into()]),
    }))
}

fn result_frame() -> AgentFrame {
    AgentFrame::Result(Box::new(AgentResult {
        status: Status::Ok,
        exit_code: Some(0),
        signal: None,
        wall_ms: 12,
        wall_us: 12_345,
        cpu_ms: 10,
        memory_kb: 8_468,
        cgroup_peak_kb: 0,
        oom_kills: 0,
        truncated: false,
        compile: None,
        message: None,
    }))
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("output frame");
    for size in [16usize, 4 << 10, 64 << 10] {
        let f = AgentFrame::Output { stream: frame::Stream::Stdout, data: vec![b'a'; size] };
        let mut encoded = Vec::new();
        frame::encode(&f, &mut encoded).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode", size), &f, |b, f| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                frame::encode(black_box(f), &mut out).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("decode", size), &encoded, |b, bytes| {
            b.iter(|| frame::decode::<AgentFrame>(black_box(bytes)).unwrap().unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("run and result frames");
    for code in [64usize, 64 << 10] {
        let f = run_frame(code);
        let mut encoded = Vec::new();
        frame::encode(&f, &mut encoded).unwrap();
        g.bench_with_input(BenchmarkId::new("run encode", code), &f, |b, f| {
            b.iter(|| {
                let mut out = Vec::new();
                frame::encode(black_box(f), &mut out).unwrap();
                out
            })
        });
        g.bench_with_input(BenchmarkId::new("run decode", code), &encoded, |b, bytes| {
            b.iter(|| frame::decode::<HostFrame>(black_box(bytes)).unwrap().unwrap())
        });
    }
    let r = result_frame();
    let mut encoded = Vec::new();
    frame::encode(&r, &mut encoded).unwrap();
    g.bench_function("result encode", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            frame::encode(black_box(&r), &mut out).unwrap();
            out
        })
    });
    g.bench_function("result decode", |b| {
        b.iter(|| frame::decode::<AgentFrame>(black_box(&encoded)).unwrap().unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
