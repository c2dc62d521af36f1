//! The servers a test runs against: real PostgreSQL, the gateway in front of it,
//! optionally Redis, and the daemon.

use std::time::{Duration, Instant};

use crate::STATUS;
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, config_memory_postgrest,
    config_memory_redis_postgrest,
};
use crate::readings::wait_for;

/// Real PostgreSQL, the gateway in front of it, optionally Redis, and the daemon.
/// Fields drop in order: the daemon goes first.
pub(crate) struct Stack {
    pub(crate) daemon: Daemon,
    pub(crate) rest: Postgrest,
    pub(crate) redis: Option<TestRedis>,
    _pg: TestPostgres,
}

impl Stack {
    /// Memory, then Redis, in front of the gateway; `extra` is appended to the config.
    pub(crate) async fn dual(extra: &str) -> Stack {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let redis = TestRedis::start();
        let config = config_memory_redis_postgrest(&redis, &rest, API_KEY) + extra;
        let daemon = Daemon::start(&config);
        let stack = Stack {
            daemon,
            rest,
            redis: Some(redis),
            _pg: pg,
        };
        stack.wait_redis("connected", Duration::from_secs(5)).await;
        // With the broadcast on, the memory tier is not read until the subscription is
        // live, and it is emptied when the subscription comes up: wait for it.
        wait_for(Duration::from_secs(5), "a live subscription", async || {
            let (_, status) = stack.daemon.get_json(STATUS).await;
            let heard = &status["invalidation"];
            (heard["broadcast"] == false || heard["subscribed"] == true).then_some(())
        })
        .await;
        stack
    }

    /// Memory in front of the gateway; `extra` is appended to the config.
    pub(crate) fn memory(extra: &str) -> Stack {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = config_memory_postgrest(&rest, API_KEY) + extra;
        Stack::with_config(pg, rest, &config)
    }

    pub(crate) fn with_config(pg: TestPostgres, rest: Postgrest, config: &str) -> Stack {
        Stack {
            daemon: Daemon::start(config),
            rest,
            redis: None,
            _pg: pg,
        }
    }

    pub(crate) fn redis(&mut self) -> &mut TestRedis {
        self.redis.as_mut().expect("this stack has Redis")
    }

    /// Polls `/codette/cache/status` until `redis_cache` reads `want`; returns how long it took.
    pub(crate) async fn wait_redis(&self, want: &str, within: Duration) -> Duration {
        let started = Instant::now();
        wait_for(within, &format!("redis_cache {want:?}"), async || {
            let (_, status) = self.daemon.get_json(STATUS).await;
            (status["cache_backends"]["redis_cache"] == want).then_some(())
        })
        .await;
        started.elapsed()
    }
}
