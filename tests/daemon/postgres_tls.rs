//! TLS to PostgreSQL, as libpq's `sslmode` says (`src/pg_tls.rs`), against a real server
//! with `ssl = on` and a certificate of a CA made for the test: the origin's pool, the
//! LISTEN session and introspection each connect as the URL asks, and a certificate the
//! roots do not vouch for (or that names another host, under `verify-full`) is refused.

use std::time::Duration;

use codette_cache::proxy::introspect::introspect;

use crate::client::{ask, ask_ok};
use crate::common::{Daemon, TestPostgres, make_certificates, postgres_origin, toml_str};
use crate::{REVERB, config, memory, run};

/// `postgres://postgres@HOST:PORT/postgres?application_name=NAME&EXTRA`.
fn url(pg: &TestPostgres, host: &str, name: &str, extra: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?application_name={name}{extra}",
        pg.port()
    )
}

/// Whether the sessions named `name` use TLS: `Some(true)` if all do, `None` if none is open.
fn sessions_use_tls(pg: &TestPostgres, name: &str) -> Option<bool> {
    let rows = pg.execute(&format!(
        "SELECT DISTINCT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = '{name}'"
    ));
    match rows.as_str() {
        "t" => Some(true),
        "f" => Some(false),
        "" => None,
        both => panic!("{name}: mixed sessions {both:?}"),
    }
}

fn origin_daemon(url: &str) -> Daemon {
    Daemon::start(&config(&[memory(300)], &postgres_origin(url, 2, 1_000)))
}

/// Each mode connects the origin's pool as libpq would: encrypted and verified
/// (`verify-full` with the test CA, by name or by address), encrypted unverified
/// (`require`, and the default `prefer` when the server offers TLS), or plain; in the
/// URL form and in the key=value form.
#[test]
fn the_origin_connects_as_sslmode_says() {
    run(async {
        let pg = TestPostgres::start_tls();
        let root = format!("&sslrootcert={}", pg.root_cert().display());
        let cases = [
            (
                "verify_full_name",
                "localhost",
                format!("&sslmode=verify-full{root}"),
                true,
            ),
            (
                "verify_full_ip",
                "127.0.0.1",
                format!("&sslmode=verify-full{root}"),
                true,
            ),
            (
                "verify_ca",
                "127.0.0.1",
                format!("&sslmode=verify-ca{root}"),
                true,
            ),
            ("require", "127.0.0.1", "&sslmode=require".to_owned(), true),
            ("prefer", "127.0.0.1", String::new(), true),
            ("disable", "127.0.0.1", "&sslmode=disable".to_owned(), false),
        ];
        for (i, (name, host, extra, tls)) in cases.into_iter().enumerate() {
            let d = origin_daemon(&url(&pg, host, name, &extra));
            let answer = ask_ok(&d, &format!("{REVERB} {i}")).await;
            assert_eq!(answer.source(), "origin", "{name}: {answer:?}");
            assert_eq!(sessions_use_tls(&pg, name), Some(tls), "{name}");
        }
        // The key=value form as libpq spells it too: blanks around `=`, a quoted path.
        let name = "key_value";
        let kv = format!(
            "host=localhost port={} user=postgres dbname=postgres application_name={name} \
             sslmode = verify-full sslrootcert='{}'",
            pg.port(),
            pg.root_cert().display()
        );
        let d = origin_daemon(&kv);
        let answer = ask_ok(&d, &format!("{REVERB} key value")).await;
        assert_eq!(answer.source(), "origin", "{name}: {answer:?}");
        assert_eq!(sessions_use_tls(&pg, name), Some(true), "{name}");
    });
}

/// A server whose certificate another CA signed is refused under `verify-ca` and
/// `verify-full` (and whenever `sslrootcert` names roots); one that names other hosts is
/// refused under `verify-full` only. No
/// session is ever opened, and the request fails at the origin's timeout.
#[test]
fn a_certificate_the_roots_do_not_vouch_for_is_refused() {
    run(async {
        let pg = TestPostgres::start_tls();
        let other = tempfile::tempdir().expect("tempdir");
        make_certificates(other.path());
        let stranger = format!("&sslrootcert={}", other.path().join("ca.pem").display());
        let own = format!("&sslrootcert={}", pg.root_cert().display());
        // The address the certificate names, reached under a name it does not.
        let renamed = "&hostaddr=127.0.0.1";
        let refused = [
            ("stranger_full", format!("&sslmode=verify-full{stranger}")),
            ("stranger_ca", format!("&sslmode=verify-ca{stranger}")),
            ("stranger_require", format!("&sslmode=require{stranger}")),
            // Roots named without a mode are checked too (not libpq's `prefer`).
            ("stranger_default", stranger.clone()),
            (
                "renamed_full",
                format!("&sslmode=verify-full{own}{renamed}"),
            ),
        ];
        for (name, extra) in refused {
            let host = if name.starts_with("renamed") {
                "db.example.invalid"
            } else {
                "127.0.0.1"
            };
            let d = origin_daemon(&url(&pg, host, name, &extra));
            let failed = ask(&d, &format!("{REVERB} {name}")).await;
            assert_eq!(
                (failed.status, failed.error_code()),
                (504, "origin_timeout"),
                "{name}: {failed:?}"
            );
            assert_eq!(
                sessions_use_tls(&pg, name),
                None,
                "{name}: a session opened"
            );
        }
        // The name check is verify-full's alone.
        let d = origin_daemon(&url(
            &pg,
            "db.example.invalid",
            "renamed_ca",
            &format!("&sslmode=verify-ca{own}{renamed}"),
        ));
        assert_eq!(ask_ok(&d, REVERB).await.source(), "origin");
        assert_eq!(sessions_use_tls(&pg, "renamed_ca"), Some(true));
    });
}

/// The LISTEN session and introspection take the same settings: both reach a TLS-only
/// question (`verify-full`) and their sessions are encrypted.
#[test]
fn listen_and_introspection_use_tls_too() {
    run(async {
        let pg = TestPostgres::start_tls();
        let verified = format!(
            "&sslmode=verify-full&sslrootcert={}",
            pg.root_cert().display()
        );
        let listen = url(&pg, "localhost", "tls_listen", &verified);
        let d = Daemon::start(&format!(
            "{}[invalidation.postgres]\nurl = {}\n\n",
            config(
                &[memory(300)],
                &postgres_origin(&url(&pg, "localhost", "tls_origin", &verified), 2, 1_000)
            ),
            toml_str(&listen)
        ));
        let live = crate::poll(Duration::from_secs(10), async || {
            let status = d.get_json("/codette/cache/status").await.1;
            (status["invalidation"]["postgres"]["subscribed"] == true).then_some(())
        });
        assert!(live.await.is_some(), "LISTEN never came up:\n{}", d.logs());
        assert_eq!(sessions_use_tls(&pg, "tls_listen"), Some(true));

        let facts = introspect(
            &url(&pg, "localhost", "tls_introspect", &verified),
            &["public".into()],
        )
        .await
        .expect("introspection over TLS");
        assert!(
            facts.iter().any(|f| f.name == "get_codette_context"),
            "{facts:#?}"
        );
    });
}
