//! Tests of the introspection rules and report (the catalog itself: tests/introspect.rs).

use super::*;

fn facts(name: &str, v: Volatility, definer: bool, user: bool, role: bool) -> FunctionFacts {
    FunctionFacts {
        schema: "public".into(),
        name: name.into(),
        args: "input_prompt text".into(),
        volatility: v,
        security_definer: definer,
        reads_user: user,
        reads_role: role,
    }
}

#[test]
fn scopes_follow_the_safety_rules() {
    use Volatility::*;
    let cases = [
        (facts("f", Volatile, true, false, false), None),
        (facts("f", Volatile, false, true, false), None),
        (facts("f", Stable, true, true, true), Some(Scope::User)),
        (facts("f", Stable, true, false, true), Some(Scope::Role)),
        (
            facts("f", Immutable, true, false, false),
            Some(Scope::Shared),
        ),
        (facts("f", Stable, true, false, false), Some(Scope::Shared)),
        (facts("f", Stable, false, false, false), Some(Scope::User)),
        (facts("f", Immutable, false, false, true), Some(Scope::Role)),
    ];
    for (f, want) in cases {
        assert_eq!(f.suggested_scope(), want, "{f:?}");
    }
}

#[test]
fn bodies_are_read_through_case_spaces_quotes_and_calls() {
    let body = normalise("SELECT * FROM t WHERE owner = \"auth\" . UID ( )");
    assert!(USER_MARKERS.iter().any(|m| body.contains(m)), "{body}");
    assert!(calls(&normalise("select helper(1)"), "helper"));
    assert!(calls(&normalise("select private . helper (1)"), "helper"));
    assert!(!calls(&normalise("select my_helper(1)"), "helper"));
    assert!(!calls(&normalise("select gen_random_uuid()"), "uid"));

    let row = |name: &str, body: &str| Row {
        facts: facts(name, Volatility::Stable, true, false, false),
        body: normalise(body),
    };
    let mut rows = vec![
        row("top", "select middle()"),
        row("middle", "select who_am_i()"),
        row("who_am_i", "x"),
        row("other", "select 1"),
    ];
    rows[2].facts.reads_user = true;
    propagate(&mut rows);
    let reads: Vec<bool> = rows.iter().map(|r| r.facts.reads_user).collect();
    assert_eq!(reads, [true, true, true, false]);
}

#[test]
fn render_shows_a_table_and_pasteable_blocks() {
    let mut private = facts("helper", Volatility::Stable, true, false, false);
    private.schema = "private".into();
    let list = [
        facts(
            "get_codette_context",
            Volatility::Stable,
            true,
            false,
            false,
        ),
        facts("my_notes", Volatility::Stable, true, true, false),
        facts("log_event", Volatility::Volatile, false, false, false),
        facts("my_notes", Volatility::Stable, true, false, false),
        private,
    ];
    let text = render(&list);
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    for column in [
        "function",
        "volatility",
        "security definer",
        "reads identity",
    ] {
        assert!(head.contains(column), "{head}");
    }
    assert!(text.contains(
        "[[proxy.functions]]\nname = \"get_codette_context\"\nttl_secs = 300\nscope = \"shared\"\n"
    ), "{text}");
    assert!(text.contains("# not cacheable: VOLATILE (public.log_event(input_prompt text))\n# name = \"log_event\"\n"), "{text}");
    // Two overloads: the narrower scope wins.
    assert!(
        text.contains("name = \"my_notes\"\nttl_secs = 300\nscope = \"user\""),
        "{text}"
    );
    assert!(
        text.contains("in schema private") && text.contains("name = \"helper\""),
        "{text}"
    );
    assert!(text.contains("private.helper(input_prompt text)"), "{text}");

    // Every block parses as the config's TOML and names a scope.
    let parsed: toml::Value = toml::from_str(&text[text.find("\n# Suggested").unwrap()..]).unwrap();
    let blocks = parsed["proxy"]["functions"].as_array().unwrap();
    assert_eq!(blocks.len(), 3);
    assert_eq!(render(&[]), "No functions found.\n");
}

#[test]
fn passwords_are_scrubbed_from_errors() {
    assert_eq!(password_of("postgres://u:p%40ss@h/db"), Some("p%40ss"));
    assert_eq!(password_of("postgres://u@h/db"), None);
    let e = std::io::Error::other("bad value p@ss near p%40ss");
    assert_eq!(
        describe(&e, "postgres://u:p%40ss@h/db"),
        "bad value <redacted> near <redacted>"
    );
}
