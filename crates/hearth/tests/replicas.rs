//! Replicas follow the NATS deployment: three copies of `RUNS`, `EVENTS`, the `RESULTS`
//! bucket and the executors' consumer on a three-node cluster, one on a single server; and
//! streams made with fewer copies (a cluster that booted short of a node) are scaled up by the
//! next process, never down.

mod support;

use std::time::Duration;

use hearth_bus::{Bus, BusConfig, Replicas};
use hearth_cluster::nats::{free_port, wait_meta_group, NatsNode, NodePorts};

async fn nodes(dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<NatsNode>> {
    let mut ports = Vec::new();
    for _ in 0..n {
        ports.push(NodePorts { client: free_port()?, cluster: free_port()?, http: free_port()? });
    }
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut node = NatsNode::prepare(&support::nats_server(), dir, i, &ports)?;
        node.start()?;
        nodes.push(node);
    }
    for node in &mut nodes {
        node.wait_healthy(Duration::from_secs(30)).await?;
    }
    if n > 1 {
        wait_meta_group(&nodes, Duration::from_secs(30)).await?;
    }
    Ok(nodes)
}

fn urls(nodes: &[NatsNode]) -> String {
    nodes.iter().map(NatsNode::url).collect::<Vec<_>>().join(",")
}

/// (RUNS, EVENTS, KV_RESULTS, executors consumer) copies as the server reports them.
async fn copies(bus: &Bus) -> anyhow::Result<(usize, usize, usize, usize)> {
    let mut n = Vec::new();
    for name in ["RUNS", "EVENTS", "KV_RESULTS"] {
        n.push(bus.js.get_stream(name).await?.info().await?.config.num_replicas);
    }
    let mut consumer = bus.executors_consumer().await?;
    Ok((n[0], n[1], n[2], consumer.info().await?.config.num_replicas))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_copies_on_a_cluster_of_three_and_one_on_a_single_server() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let single = nodes(&dir.path().join("single"), 1).await?;
    let bus = Bus::connect(&urls(&single), "replicas-test", BusConfig::default()).await?;
    assert_eq!(bus.replicas, 1);
    assert_eq!(copies(&bus).await?, (1, 1, 1, 1));
    drop(bus);
    drop(single);

    let cluster = nodes(&dir.path().join("cluster"), 3).await?;
    let bus = Bus::connect(&urls(&cluster), "replicas-test", BusConfig::default()).await?;
    assert_eq!(bus.replicas, 3, "detected: a cluster of three");
    assert_eq!(copies(&bus).await?, (3, 3, 3, 3));
    Ok(())
}

fn one_again() -> BusConfig {
    BusConfig { replicas: Replicas::Fixed(1), ..BusConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_copies_are_scaled_up_by_the_next_process_and_never_down() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let cluster = nodes(dir.path(), 3).await?;
    let first = Bus::connect(&urls(&cluster), "first", one_again()).await?;
    assert_eq!(copies(&first).await?, (1, 1, 1, 1));
    let next = Bus::connect(&urls(&cluster), "next", BusConfig::default()).await?;
    assert_eq!(next.replicas, 3);
    assert_eq!(copies(&next).await?, (3, 3, 3, 3), "scaled up to the cluster's three");
    // A later process that asks for one does not shrink them.
    let later = Bus::connect(&urls(&cluster), "later", one_again()).await?;
    assert_eq!(copies(&later).await?, (3, 3, 3, 3));
    Ok(())
}

/// A process started while its NATS cluster cannot elect a leader yet (one node of three up:
/// no majority; systemd starting everything at once) waits for JetStream instead of calling
/// it disabled, and sets up three copies once the others are up. A server without JetStream
/// at all is still refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_waits_for_a_cluster_that_has_no_leader_yet() -> anyhow::Result<()> {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let dir = support::dir()?;
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push(NodePorts { client: free_port()?, cluster: free_port()?, http: free_port()? });
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(NatsNode::prepare(&support::nats_server(), dir.path(), i, &ports)?);
    }
    nodes[0].start()?;
    // Listening (not healthy: it cannot be, alone).
    let lone = std::net::SocketAddr::from(([127, 0, 0, 1], ports[0].client));
    support::until(Duration::from_secs(20), "the lone node listens", || std::net::TcpStream::connect(lone).is_ok())
        .await?;
    let url = urls(&nodes);
    let early = tokio::spawn(async move { Bus::connect(&url, "early", BusConfig::default()).await });
    // Long enough for the client to reach the lone node and be told "no leader".
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in &mut nodes[1..] {
        node.start()?;
    }
    let bus = tokio::time::timeout(Duration::from_secs(90), early).await???;
    assert_eq!(bus.replicas, 3);
    assert_eq!(copies(&bus).await?, (3, 3, 3, 3));
    drop(bus);

    // A server without JetStream: the clear error, at once.
    let port = free_port()?;
    let conf = dir.path().join("plain.conf");
    std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\n"))?;
    let mut plain = tokio::process::Command::new(support::nats_server())
        .arg("-c")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let plain_url = format!("nats://127.0.0.1:{port}");
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match Bus::connect(&plain_url, "plain", BusConfig::default()).await {
                Err(hearth_bus::BusError::Connect { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
                other => return other,
            }
        }
    })
    .await?;
    match refused {
        Err(e @ hearth_bus::BusError::NoJetStream { .. }) => assert!(e.to_string().contains("-js"), "{e}"),
        Err(e) => anyhow::bail!("not the JetStream error: {e}"),
        Ok(_) => anyhow::bail!("a server without JetStream was taken"),
    }
    plain.kill().await?;
    Ok(())
}
