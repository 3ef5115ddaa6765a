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
