//! The Redis Cluster tier's dealings with single nodes: the probe and what it learns of
//! the cluster (its state and node count, for status routes), the masters' addresses,
//! and one SCAN step on one master (a cluster-wide SCAN does not exist).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};

use super::Topology;

/// What the probe last learnt of the cluster (for status routes; never waits).
#[derive(Default)]
pub struct View {
    /// 0 unknown, 1 ok, 2 fail.
    state: AtomicU8,
    known_nodes: AtomicU32,
    masters: AtomicU32,
}

impl View {
    pub fn topology(&self) -> Topology {
        Topology {
            state: match self.state.load(Ordering::Relaxed) {
                1 => "ok",
                2 => "fail",
                _ => "unknown",
            },
            known_nodes: self.known_nodes.load(Ordering::Relaxed),
            masters: self.masters.load(Ordering::Relaxed),
        }
    }
}

/// `CLUSTER INFO` from any node, then PING on every master.
pub async fn probe(mut conn: ClusterConnection, view: Arc<View>) -> bool {
    let info: Option<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .ok();
    let Some(info) = info else {
        view.state.store(0, Ordering::Relaxed);
        return false;
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let ok = field("cluster_state") == Some("ok");
    view.state.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    let count = |name| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    view.known_nodes
        .store(count("cluster_known_nodes"), Ordering::Relaxed);
    view.masters.store(count("cluster_size"), Ordering::Relaxed);
    ok && redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

/// One SCAN step on the master at `addr` ("host:port").
pub async fn scan(
    conn: &mut ClusterConnection,
    addr: String,
    step: redis::Cmd,
) -> redis::RedisResult<(u64, Vec<String>)> {
    let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, ""));
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port: port.parse().unwrap_or(0),
    });
    let value = conn.route_command(step, route).await?;
    Ok(redis::from_redis_value(value)?)
}

/// The addresses ("host:port") of the masters the client knows.
pub async fn masters(conn: &mut ClusterConnection) -> redis::RedisResult<Vec<String>> {
    let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    Ok(match conn.route_command(redis::cmd("PING"), all).await? {
        redis::Value::Map(nodes) => nodes
            .into_iter()
            .filter_map(|(addr, _)| redis::from_redis_value(addr).ok())
            .collect(),
        _ => Vec::new(),
    })
}
