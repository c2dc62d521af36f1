//! `codette-cache introspect` against a real PostgreSQL: functions of each kind the
//! rules tell apart are created, then both the library's facts and the binary's output
//! are checked, including that the URL's password is never printed.

mod common;

use std::process::{Command, Output};

use codette_cache::proxy::Scope;
use codette_cache::proxy::introspect::{FunctionFacts, Volatility, introspect};
use common::TestPostgres;

/// Supabase's `auth.uid()` where the schema has none, and one function of each kind.
const FUNCTIONS_SQL: &str = r#"
DO $$
BEGIN
    IF to_regprocedure('auth.uid()') IS NULL THEN
        CREATE SCHEMA IF NOT EXISTS auth;
        CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
            SELECT nullif(current_setting('request.jwt.claims', true)::json->>'sub', '')::uuid
        $f$;
    END IF;
END
$$;
CREATE SCHEMA IF NOT EXISTS it_private;

CREATE FUNCTION public.it_shared_facts(topic text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT 'facts about ' || topic $$;
CREATE FUNCTION public.it_my_notes() RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT 'notes of ' || "auth"."uid"()::text $$;
CREATE FUNCTION public.it_log_hit(n integer) RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER AS $$ SELECT n + 1 $$;
CREATE FUNCTION public.it_whoami() RETURNS text
    LANGUAGE sql STABLE SECURITY INVOKER AS $$ SELECT CURRENT_USER::text $$;
CREATE FUNCTION public.it_plain_invoker(x integer) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;

-- Reads the user only through a helper in another schema, in a BEGIN ATOMIC body.
CREATE FUNCTION it_private.it_owner_id() RETURNS uuid
    LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN auth.uid(); END $$;
CREATE FUNCTION public.it_via_helper() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    BEGIN ATOMIC SELECT it_private.it_owner_id()::text; END;
"#;

const PASSWORD: &str = "s3cretPW-never-printed";

fn start() -> TestPostgres {
    let pg = TestPostgres::start();
    pg.execute(FUNCTIONS_SQL);
    pg
}

fn find<'a>(facts: &'a [FunctionFacts], schema: &str, name: &str) -> &'a FunctionFacts {
    facts
        .iter()
        .find(|f| f.schema == schema && f.name == name)
        .unwrap_or_else(|| panic!("{schema}.{name} missing from {facts:#?}"))
}

fn introspect_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codette-cache"))
        .arg("introspect")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run codette-cache")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn facts_and_scopes_come_from_the_catalog() {
    let pg = start();
    let facts = introspect(&pg.url(), &["public".into()]).await.unwrap();
    assert!(facts.iter().all(|f| f.schema == "public"), "{facts:#?}");

    let shared = find(&facts, "public", "it_shared_facts");
    assert_eq!(
        (
            shared.args.as_str(),
            shared.volatility,
            shared.security_definer
        ),
        ("topic text", Volatility::Stable, true)
    );
    assert!(!shared.reads_user && !shared.reads_role);
    assert_eq!(shared.suggested_scope(), Some(Scope::Shared));

    let notes = find(&facts, "public", "it_my_notes");
    assert!(notes.reads_user && !notes.security_definer);
    assert_eq!(notes.suggested_scope(), Some(Scope::User));

    let log = find(&facts, "public", "it_log_hit");
    assert_eq!(log.volatility, Volatility::Volatile);
    assert_eq!(log.suggested_scope(), None);

    let it_whoami = find(&facts, "public", "it_whoami");
    assert!(it_whoami.reads_role && !it_whoami.reads_user);
    assert_eq!(it_whoami.suggested_scope(), Some(Scope::Role));

    let plain = find(&facts, "public", "it_plain_invoker");
    assert_eq!(plain.volatility, Volatility::Immutable);
    assert_eq!(plain.suggested_scope(), Some(Scope::User), "RLS may apply");

    let via = find(&facts, "public", "it_via_helper");
    assert!(via.reads_user, "through it_private.it_owner_id(): {via:?}");
    assert_eq!(via.suggested_scope(), Some(Scope::User));

    let both = introspect(&pg.url(), &["public".into(), "it_private".into()])
        .await
        .unwrap();
    assert!(find(&both, "it_private", "it_owner_id").reads_user);
    assert_eq!(both.len(), facts.len() + 1);
}

#[test]
fn the_subcommand_prints_a_table_and_blocks_without_the_password() {
    let pg = start();
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
        pg.port()
    );
    let output = introspect_cli(&[
        "--url",
        &url,
        "--schema",
        "public",
        "--schema",
        "it_private",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    assert!(stdout.starts_with("function"), "{stdout}");
    assert!(
        stdout.contains("public.it_shared_facts(topic text)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "[[proxy.functions]]\nname = \"it_shared_facts\"\nttl_secs = 300\nscope = \"shared\"\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("name = \"it_my_notes\"\nttl_secs = 300\nscope = \"user\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("name = \"it_whoami\"\nttl_secs = 300\nscope = \"role\""),
        "{stdout}"
    );
    assert!(stdout.contains("# not cacheable: VOLATILE"), "{stdout}");
    assert!(stdout.contains("# name = \"it_log_hit\""), "{stdout}");
    assert!(stdout.contains("in schema it_private"), "{stdout}");

    // The blocks are the config's TOML.
    let blocks = &stdout[stdout.find("\n# Suggested").unwrap()..];
    let parsed: toml::Value = toml::from_str(blocks).expect(blocks);
    assert!(parsed["proxy"]["functions"].as_array().unwrap().len() >= 5);

    // Only public by default.
    let output = introspect_cli(&["--url", &pg.url()]);
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(!stdout.contains("it_private.it_owner_id"), "{stdout}");
}

#[test]
fn bad_urls_fail_clearly_without_the_password() {
    let port = common::free_port();
    let cases = [
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"),
            "cannot connect to postgres://postgres:<redacted>@127.0.0.1:",
        ),
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1:notaport/postgres"),
            "is not a PostgreSQL URL",
        ),
    ];
    for (url, expected) in cases {
        let output = introspect_cli(&["--url", &url]);
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.starts_with("codette-cache introspect: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
            "{stderr}"
        );
    }
}
