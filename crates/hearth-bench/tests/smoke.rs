//! The bench against the real thing, in-process (nats-server, gateway, executor with the
//! process driver), with tiny counts: it must produce a complete, well-formed report. It
//! asserts what was measured and written, never how fast.

#[path = "../../hearth-gateway/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use hearth_bench::{BenchConfig, ConnectionsConfig, LatencyConfig, Report, ThroughputConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_writes_a_complete_report() -> anyhow::Result<()> {
    let stack = support::Stack::start(support::quick_bus(), true).await?;
    let out = tempfile::tempdir()?;
    let runs = 3;
    let config = BenchConfig {
        url: format!("http://{}", stack.addr),
        token: None,
        out: out.path().to_path_buf(),
        note: "smoke".into(),
        latency: ["python", "bash"]
            .iter()
            .map(|lang| LatencyConfig {
                lang: lang.to_string(),
                code: hearth_bench::default_code(lang).unwrap().to_string(),
                runs,
                warmup: 1,
                pause: Duration::from_millis(20),
                bare: None,
            })
            .collect(),
        throughput: vec![ThroughputConfig {
            lang: "bash".into(),
            code: "echo 1".into(),
            concurrency: vec![2],
            duration: Duration::from_millis(500),
            bare: None,
        }],
        connections: Some(ConnectionsConfig {
            sockets: 30,
            parallel: 8,
            fanout_sockets: 3,
            fanout_runs: 2,
            lang: "bash".into(),
            code: "echo 1".into(),
        }),
    };
    let report = tokio::time::timeout(Duration::from_secs(120), hearth_bench::run(&config)).await??;

    // What was written is what was returned, and parses back.
    let json = std::fs::read(out.path().join("report.json"))?;
    let parsed: Report = serde_json::from_slice(&json)?;
    assert_eq!((parsed.format, parsed.note.as_str(), parsed.host.load_before.len()), (1, "smoke", 3));
    assert_eq!((parsed.latency.len(), parsed.throughput.len(), parsed.targets.len()), (2, 1, 4));
    assert_eq!(parsed.latency[0].end_to_end_ms, report.latency[0].end_to_end_ms);
    assert_eq!(std::fs::read_to_string(out.path().join("report.md"))?, report.markdown());

    assert_eq!(report.latency.len(), 2);
    for l in &report.latency {
        assert_eq!((l.errors, l.end_to_end_ms.n, l.bare_ms.n), (0, runs, runs), "{}: {:?}", l.lang, l.first_error);
        assert_eq!(l.first_output_ms.n, runs, "{}: every run printed, so every run had a first output", l.lang);
        assert_eq!(l.samples.end_to_end_ms.len(), runs);
        assert_eq!(l.breakdown_ms.len(), hearth_bench::latency::SPANS.len());
        assert!(l.breakdown_ms.iter().all(|(_, s)| s.n == runs), "{}: every run carried its timing", l.lang);
        assert!(l.bare_command[0].starts_with('/'), "the bare interpreter is resolved, not found on PATH");
        assert!(l.end_to_end_ms.p50 > 0.0 && l.ratio_p50 > 0.0);
    }

    let tp = &report.throughput[0];
    assert_eq!(tp.levels.len(), 1);
    assert!(tp.levels[0].ok > 0 && tp.levels[0].bare_runs_per_s > 0.0, "{:?}", tp.levels[0]);
    assert_eq!(tp.levels[0].errors, 0, "{:?}", tp.levels[0].error_kinds);

    let c = report.connections.as_ref().expect("connections ran");
    assert_eq!((c.opened, c.failed), (30, 0), "{:?}", c.first_error);
    assert_eq!((c.gateway_ws_connections, c.still_open), (30, 30));
    assert!(c.gateway_rss_after > 0);
    let fanout = c.fanout.as_ref().expect("fan-out ran");
    assert_eq!((fanout.expected, fanout.received), (6, 6));

    // One target per measured part; the summary and the plots are there.
    assert_eq!(report.targets.len(), 4, "{:?}", report.targets);
    let md = std::fs::read_to_string(out.path().join("report.md"))?;
    assert!(md.contains("## Targets") && md.contains("## Latency: python") && md.contains("## Connections"));
    for svg in ["latency-python-cdf.svg", "latency-bash-hist.svg", "throughput-bash.svg"] {
        let text = std::fs::read_to_string(out.path().join(svg))?;
        assert!(text.starts_with("<svg ") && text.contains("<polyline"), "{svg}");
        assert!(md.contains(svg), "the summary links {svg}");
    }
    Ok(())
}
