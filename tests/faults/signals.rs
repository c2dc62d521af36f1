//! Signals: SIGTERM drains in-flight requests, and SIGHUP under load reloads.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::client::{Load, ask_ok, tally};
use crate::common::{
    API_KEY, Daemon, Postgrest, TestPostgres, TestRedis, log_section, sample_origin, toml_str,
};
use crate::daemon_side::{config_path, metric, metrics_text, num, stats, write_config};
use crate::raw_http::{idle_keep_alive, slow_request, wait_refused};
use crate::{CONTEXT, MIB, cache, grace_section, memory_supabase, ms, poll, shared};

// ---------------------------------------------------------------------------------------
// 7. SIGTERM
// ---------------------------------------------------------------------------------------

/// SIGTERM with 8 slow requests in flight and 20 idle keep-alives: every request completes, new connections are refused, idle ones closed at once, exit 0 within the grace.
#[test]
fn sigterm_drains_in_flight_and_closes_idle_keep_alives() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            grace_section(10),
            memory_supabase(&rest, &cache(300, 0, 0), 300, 10_000),
        ]
        .concat();
        let mut daemon = Daemon::start(&config);
        let port = daemon.port();
        let mut idle: Vec<TcpStream> = (0..20).map(|_| idle_keep_alive(port)).collect();

        rest.set_delay(Duration::from_millis(2_000));
        let sent = Instant::now();
        const IN_FLIGHT: u64 = 8;
        let slow: Vec<_> = (0..IN_FLIGHT)
            .map(|i| slow_request(port, &format!("reverb while draining {i}")))
            .collect();
        poll(Duration::from_secs(5), async || {
            (rest.calls() == IN_FLIGHT).then_some(())
        })
        .await
        .expect("the slow requests never all reached the origin");

        daemon.signal("TERM");
        let signalled = Instant::now();
        let refused =
            wait_refused(port, Duration::from_secs(2)).expect("new connections still accepted");
        let refused_while_in_flight = !slow.iter().any(|s| s.is_finished());
        let mut closed = 0;
        for stream in &mut idle {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) => closed += 1,
                other => panic!("idle keep-alive not closed: {other:?}"),
            }
        }
        let idle_closed = Instant::now();
        let idle_closed_while_in_flight = !slow.iter().any(|s| s.is_finished());

        let mut answered = signalled;
        for request in slow {
            let (response, at) = request.join().expect("slow request thread");
            let response = response.expect("an in-flight request failed");
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.contains("\"source\":\"origin\""), "{response}");
            answered = answered.max(at);
        }
        let status = daemon.wait_exit(Duration::from_secs(12));
        let exited = Instant::now();
        println!(
            "sigterm: refused new connections {:.0} ms, closed {closed} idle keep-alives {:.0} ms, \
             answered the {IN_FLIGHT} in-flight requests by {:.0} ms after the signal (sent {:.0} ms before it); \
             exit {status:?} {:.0} ms after the signal",
            ms(refused - signalled),
            ms(idle_closed - signalled),
            ms(answered - signalled),
            ms(signalled - sent),
            ms(exited - signalled)
        );
        assert!(
            refused_while_in_flight,
            "refused only after the request ended"
        );
        assert!(refused - signalled < Duration::from_millis(500));
        assert_eq!(closed, 20);
        assert!(
            idle_closed_while_in_flight,
            "idle connections closed only at exit"
        );
        let status =
            status.unwrap_or_else(|| panic!("no exit within the grace:\n{}", daemon.logs()));
        assert!(status.success(), "{status}\n{}", daemon.logs());
        assert!(exited - signalled < Duration::from_secs(10));
        assert!(exited >= answered);
    });
}

/// A second SIGTERM during a long drain (10 s origin delay, 30 s grace) exits at once,
/// a SIGHUP between the two notwithstanding.
#[test]
fn second_sigterm_exits_at_once() {
    shared(async {
        let pg = TestPostgres::start();
        let rest = Postgrest::start(&pg, API_KEY);
        let config = [
            grace_section(30),
            memory_supabase(&rest, &cache(300, 0, 0), 300, 20_000),
        ]
        .concat();
        let mut daemon = Daemon::start(&config);
        let port = daemon.port();
        rest.set_delay(Duration::from_secs(10));
        let slow = slow_request(port, "reverb, slowly, during a long drain");
        poll(Duration::from_secs(5), async || {
            (rest.calls() == 1).then_some(())
        })
        .await
        .expect("the slow request never reached the origin");

        daemon.signal("TERM");
        wait_refused(port, Duration::from_secs(2)).expect("not draining");
        assert!(
            daemon.wait_exit(Duration::from_millis(300)).is_none(),
            "exited before the drain"
        );
        // A reload asked for while draining does not switch the second signal off.
        daemon.signal("HUP");
        std::thread::sleep(Duration::from_millis(100));
        daemon.signal("TERM");
        let second = Instant::now();
        let status = daemon.wait_exit(Duration::from_secs(5));
        let took = second.elapsed();
        println!(
            "second sigterm: exit {status:?} {:.0} ms after it",
            ms(took)
        );
        let status = status.unwrap_or_else(|| panic!("still running:\n{}", daemon.logs()));
        assert!(status.success(), "{status}");
        assert!(
            took < Duration::from_secs(1),
            "exit {took:?} after the second SIGTERM"
        );
        let (result, _) = slow.join().expect("slow thread");
        assert!(
            result
                .as_ref()
                .map_or(true, |r| !r.starts_with("HTTP/1.1 200")),
            "the slow request was not cut short: {result:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 8. SIGHUP
// ---------------------------------------------------------------------------------------

fn hup_config(redis_url: &str, ttl_secs: u64) -> String {
    [
        log_section("info"),
        cache(ttl_secs, 0, 0),
        format!(
            "[[tiers]]\ntype = \"memory\"\nmax_entries = 10000\nmax_bytes = {}\n\n",
            64 * MIB
        ),
        format!(
            "[[tiers]]\ntype = \"redis\"\nurl = {}\ntimeout_ms = 50\n\n",
            toml_str(redis_url)
        ),
        sample_origin(),
    ]
    .concat()
}

/// SIGHUP under 8 looping clients: five reloads with new TTLs lose no request; a broken file sets config_last_reload_successful 0 and the old config keeps serving.
#[test]
fn sighup_under_load_loses_nothing_and_survives_a_broken_file() {
    shared(async {
        let redis = TestRedis::start();
        let daemon = Daemon::start(&hup_config(&redis.url(), 300));
        let path = config_path(&daemon);
        let load = Load::start(daemon.url(CONTEXT), 8, |t, i| {
            format!("reverb across reloads {}", (t as u64 * 13 + i) % 60)
        });
        load.wait_for(200, Duration::from_secs(5)).await;

        let mut reload_times = Vec::new();
        for ttl in 301..=305 {
            write_config(&path, &hup_config(&redis.url(), ttl));
            daemon.signal("HUP");
            let sent = Instant::now();
            let (_, at) = poll(Duration::from_secs(3), async || {
                (num(&stats(&daemon).await, "/ttl_seconds") == ttl).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("ttl {ttl} never applied:\n{}", daemon.logs()));
            reload_times.push(ms(at - sent).round());
            load.wait_for(100, Duration::from_secs(2)).await;
        }
        let text = metrics_text(&daemon).await;
        assert_eq!(
            metric(
                &text,
                "codette_cache_config_reloads_total{result=\"success\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            metric(&text, "codette_cache_config_last_reload_successful"),
            Some(1.0),
            "{}",
            daemon.logs()
        );

        write_config(&path, "[cache\nttl_secs = \"not a number\n");
        daemon.signal("HUP");
        let rejected = poll(Duration::from_secs(3), async || {
            let text = metrics_text(&daemon).await;
            (metric(&text, "codette_cache_config_last_reload_successful") == Some(0.0))
                .then_some(text)
        })
        .await;
        let (text, _) =
            rejected.unwrap_or_else(|| panic!("broken config not reported:\n{}", daemon.logs()));
        assert_eq!(
            metric(
                &text,
                "codette_cache_config_reloads_total{result=\"failure\"}"
            ),
            Some(1.0)
        );
        load.wait_for(200, Duration::from_secs(3)).await;
        assert_eq!(
            num(&stats(&daemon).await, "/ttl_seconds"),
            305,
            "the old config was not kept"
        );
        let reply = ask_ok(&daemon, "reverb after a broken reload").await;
        assert_eq!(reply.source(), "origin");

        let records = load.finish().await;
        let (sources, failures) = tally(&records);
        println!(
            "sighup: {} requests {sources:?} across 5 reloads (applied after {reload_times:?} ms) \
             and one rejected file",
            records.len()
        );
        assert!(
            failures.is_empty(),
            "{} failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(
            daemon.logs().contains("config reload rejected"),
            "{}",
            daemon.logs()
        );
    });
}
