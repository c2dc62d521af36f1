//! The reference `config.toml` never rots: it parses, it states the code's defaults, and
//! it mentions every option. Env layering and validation messages.

#![allow(clippy::result_large_err)] // figment::Error is large; Jail's closures return it.

use super::*;
use figment::Jail;

/// Every key a fully populated config serialises to, as dotted paths.
fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            out.push(format!("{prefix}{k}"));
            keys(v, &format!("{prefix}{k}."), out);
        }
    }
}

fn all_option_names() -> Vec<String> {
    let mut names = Vec::new();
    let config = Config::from_toml("").unwrap();
    keys(&toml::Value::try_from(&config).unwrap(), "", &mut names);
    // Variants and optional fields the default config does not show.
    let extra: &[&str] = &[
        r#"type = "memory"
max_entries = 1
max_bytes = 1
ttl_secs = 1"#,
        r#"type = "redis"
url = "redis://x"
timeout_ms = 1
connect_timeout_ms = 1
ttl_secs = 1"#,
        r#"type = "redis_cluster"
nodes = ["redis://x:7001"]
timeout_ms = 1
connect_timeout_ms = 1
read_from_replicas = true
ttl_secs = 1"#,
    ];
    for tier in extra {
        let t: TierConfig = toml::from_str(tier).unwrap();
        keys(&toml::Value::try_from(&t).unwrap(), "tiers.", &mut names);
    }
    let origins: &[&str] = &[
        r#"type = "supabase"
url = "x"
api_key = "k"
api_key_file = "f""#,
        r#"type = "postgres""#,
        r#"type = "sample"
path = "p""#,
    ];
    for origin in origins {
        let o: OriginConfig = toml::from_str(origin).unwrap();
        keys(&toml::Value::try_from(&o).unwrap(), "origin.", &mut names);
    }
    let admin = AdminConfig {
        token_file: Some("t".into()),
        ..AdminConfig::default()
    };
    keys(
        &toml::Value::try_from(&admin).unwrap(),
        "admin.",
        &mut names,
    );
    let proxy: crate::config::ProxyConfig = toml::from_str(
        "upstream = \"x\"\nintrospect_url = \"x\"\n[jwt]\nsecret_file = \"f\"\njwks_url = \"u\"\n[[functions]]\nname = \"f\"",
    )
    .unwrap();
    keys(
        &toml::Value::try_from(&proxy).unwrap(),
        "proxy.",
        &mut names,
    );
    names.sort();
    names.dedup();
    names
}

/// config.toml parses and its values are exactly the defaults in code.
#[test]
fn reference_config_states_the_defaults() {
    let from_file = Config::from_toml("").unwrap();
    let bare: Config = Figment::from(Toml::string(
        "[[tiers]]\ntype = \"memory\"\n[[tiers]]\ntype = \"redis\"\n[origin]\ntype = \"sample\"",
    ))
    .extract()
    .unwrap();
    assert_eq!(from_file, bare);
}

/// Every option of every section and plugin is documented in config.toml.
#[test]
fn reference_config_mentions_every_option() {
    let missing: Vec<String> = all_option_names()
        .iter()
        .map(|path| path.rsplit('.').next().unwrap_or(path).to_owned())
        .filter(|name| name != "type")
        .filter(|name| {
            !EMBEDDED.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{name} ="))
                    || l.starts_with(&format!("[{name}]"))
                    || l.starts_with(&format!("[[{name}]]"))
                    || (l.starts_with('[') && l.ends_with(&format!(".{name}]")))
                    || (l.starts_with("[[") && l.ends_with(&format!(".{name}]]")))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config.toml does not mention: {missing:?}"
    );
}

/// Every option outside `[[tiers]]` (an array, so file-only) names the env variable
/// that overrides it in config.toml, spelled exactly.
#[test]
fn reference_config_names_every_env_override() {
    let missing: Vec<String> = all_option_names()
        .iter()
        .filter(|path| path.matches('.').count() == 1 && !path.starts_with("tiers."))
        .filter(|path| !path.ends_with(".type"))
        .map(|path| format!("CODETTE_CACHE_{}", path.replace('.', "__").to_uppercase()))
        .filter(|env| !EMBEDDED.contains(env.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "config.toml does not name these overrides: {missing:?}"
    );
}

/// CODETTE_CACHE_* env variables override the file, nested with `__`.
#[test]
fn env_overrides_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[cache]\nttl_secs = 60")?;
        jail.set_env("CODETTE_CACHE_SERVER__LISTEN", "127.0.0.1:9000");
        jail.set_env("CODETTE_CACHE_CACHE__TTL_SECS", "30");
        jail.set_env("CODETTE_CACHE_ADMIN__TOKEN", "s3cret");
        let c = Config::load(Some(Path::new("c.toml"))).unwrap();
        assert_eq!(c.listen_addr().port(), 9000);
        assert_eq!(c.cache.ttl_secs, 30);
        assert_eq!(c.admin.token.expose(), "s3cret");
        Ok(())
    });
}

/// The original server's env names fill the redis tier and the supabase origin.
#[test]
fn original_env_names_are_honoured() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[origin]\ntype = \"supabase\"")?;
        jail.set_env("REDIS_HOST", "10.0.0.5");
        jail.set_env("REDIS_PORT", "6380");
        jail.set_env("REDIS_DB", "2");
        jail.set_env("VITE_SUPABASE_URL", "https://example.supabase.co");
        jail.set_env("SUPABASE_SERVICE_ROLE_KEY", "service");
        jail.set_env("VITE_SUPABASE_ANON_KEY", "anon");
        let c = Config::load(Some(Path::new("c.toml"))).unwrap();
        let TierConfig::Redis(redis) = &c.tiers[1] else {
            panic!("redis tier")
        };
        assert_eq!(redis.url, "redis://10.0.0.5:6380/2");
        let OriginConfig::Supabase(s) = &c.origin else {
            panic!("supabase")
        };
        assert_eq!(s.url, "https://example.supabase.co");
        assert_eq!(s.api_key.expose(), "anon");
        Ok(())
    });
}

/// An unknown key is an error naming the key.
#[test]
fn unknown_keys_are_rejected() {
    let err = Config::from_toml("[server]\nlisten_addr = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_addr"), "{err}");
}

/// Validation lists every problem at once.
#[test]
fn all_problems_are_reported() {
    let err = Config::from_toml(
        "[server]\nlisten = \"nowhere\"\n[cache]\nttl_secs = 0\n[origin]\ntype = \"supabase\"",
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "server.listen",
        "cache.ttl_secs",
        "api_key is empty",
        "url \"\"",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

/// Absurd sizes and times are refused with what to write, not accepted to overflow
/// later (a semaphore that panics, a TTL Redis refuses, an `Instant` past its range).
#[test]
fn absurd_limits_are_refused() {
    let err = Config::from_toml(
        "[server]\nmax_connections = 2305843009213693952\n[cache]\nnegative_ttl_secs = 9223372036854775807\nstale_if_error_wait_ms = 9223372036854775807\n[[tiers]]\ntype = \"memory\"\nttl_secs = 9200000000000000",
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "server.max_connections is 2305843009213693952: at most 1000000",
        "cache.negative_ttl_secs is over ten years",
        "cache.stale_if_error_wait_ms is over ten years",
        "tiers[0] (memory): ttl_secs is over ten years",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    Config::from_toml("[server]\nmax_connections = 1000000\n[cache]\nttl_secs = 315360000")
        .expect("ten years and a million connections are accepted");
}

/// A cluster tier needs nodes, each a Redis URL; the message says what to write.
#[test]
fn cluster_nodes_are_checked() {
    let err = Config::from_toml("[[tiers]]\ntype = \"redis_cluster\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes must name at least one node"), "{err}");
    let err = Config::from_toml(
        "[[tiers]]\ntype = \"redis_cluster\"\nnodes = [\"redis://127.0.0.1:7001\", \"http://nope\"]",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("node \"http://nope\" is not a Redis URL"),
        "{err}"
    );
    assert!(!err.contains("7001"), "{err}");
    let c = Config::from_toml(
        "[[tiers]]\ntype = \"redis_cluster\"\nnodes = [\"redis://app:hunter2@127.0.0.1:7001\"]",
    )
    .unwrap();
    assert_eq!(
        c.shared_redis(),
        Some(vec!["redis://app:hunter2@127.0.0.1:7001".to_owned()])
    );
    assert!(!c.to_redacted_toml().contains("hunter2"));
    assert!(c.broadcasts());
}

/// check-config output redacts keys, passwords and tokens.
#[test]
fn redacted_output_hides_secrets() {
    let c = Config::from_toml(
        r#"[[tiers]]
type = "redis"
url = "redis://app:hunter2@127.0.0.1:6379/0"
[origin]
type = "supabase"
url = "https://x.supabase.co"
api_key = "sb-secret-key"
[admin]
token = "admintoken"
"#,
    )
    .unwrap();
    let out = c.to_redacted_toml();
    for secret in ["hunter2", "sb-secret-key", "admintoken"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains(REDACTED));
}
