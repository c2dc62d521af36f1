//! What `codette-cache introspect` prints: a table of the functions, then the
//! `[[proxy.functions]]` blocks they suggest; and the command itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use super::{FunctionFacts, SUGGESTED_TTL_SECS, introspect};
use crate::proxy::Scope;

/// A table of the functions, then `[[proxy.functions]]` blocks to paste into the
/// config. Overloads, and same-named functions in several schemas, share one block
/// (`/rest/v1/rpc/{name}` names no schema or arguments): not cacheable if any is
/// VOLATILE, else the narrowest scope any of them needs.
pub fn render(facts: &[FunctionFacts]) -> String {
    if facts.is_empty() {
        return "No functions found.\n".into();
    }
    let mut out = String::new();
    let header = [
        "function",
        "volatility",
        "security definer",
        "reads identity",
        "suggested",
    ];
    let rows: Vec<[String; 5]> = facts
        .iter()
        .map(|f| {
            let reads = match (f.reads_user, f.reads_role) {
                (true, true) => "user, role",
                (true, false) => "user",
                (false, true) => "role",
                (false, false) => "no",
            };
            [
                f.qualified(),
                f.volatility.as_str().into(),
                if f.security_definer { "yes" } else { "no" }.into(),
                reads.into(),
                f.suggested_scope().map_or("never", Scope::as_str).into(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(l, "{cell:<width$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out.push_str(
        "\n# Suggested [[proxy.functions]]: review them (see `codette-cache introspect --help`);\n\
         # ttl_secs is a starting point.\n",
    );
    let mut by_name: BTreeMap<&str, Vec<&FunctionFacts>> = BTreeMap::new();
    for f in facts {
        by_name.entry(&f.name).or_default().push(f);
    }
    for (name, group) in by_name {
        out.push('\n');
        block(&mut out, name, &group);
    }
    out
}

/// One `[[proxy.functions]]` block, or the comment saying why there is none.
fn block(out: &mut String, name: &str, group: &[&FunctionFacts]) {
    let quoted = toml::Value::String(name.to_owned()).to_string();
    if group.len() > 1 {
        let _ = writeln!(
            out,
            "# {} functions named {quoted} (overloads or schemas) share the cache entry:",
            group.len()
        );
    }
    let schemas: Vec<&str> = group
        .iter()
        .map(|f| f.schema.as_str())
        .filter(|s| *s != "public")
        .collect();
    if let Some(schema) = schemas.first() {
        let _ = writeln!(
            out,
            "# in schema {schema}: PostgREST serves it with the Accept-Profile/Content-Profile header"
        );
    }
    if let Some(volatile) = group.iter().find(|f| f.suggested_scope().is_none()) {
        let _ = writeln!(out, "# not cacheable: VOLATILE ({})", volatile.qualified());
        let _ = writeln!(out, "# name = {quoted}");
        return;
    }
    let chosen = [Scope::User, Scope::Role, Scope::Shared]
        .into_iter()
        .find_map(|s| {
            group
                .iter()
                .copied()
                .find(|f| f.suggested_scope() == Some(s))
        })
        .unwrap_or(group[0]);
    let scope = chosen.suggested_scope().unwrap_or(Scope::User);
    let _ = writeln!(out, "# {}", chosen.reason());
    let _ = writeln!(
        out,
        "[[proxy.functions]]\nname = {quoted}\nttl_secs = {SUGGESTED_TTL_SECS}\nscope = \"{}\"",
        scope.as_str()
    );
}

/// Flags of `codette-cache introspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Rules, in order: VOLATILE is never cached; a body reading auth.uid(), \
    auth.jwt() or request.jwt is cached per user; one reading current_user or auth.role() per \
    role; SECURITY DEFINER is shared; any other (SECURITY INVOKER, where row-level security \
    may depend on the caller) per user."
)]
pub struct IntrospectArgs {
    /// The database, e.g. postgres://postgres:PASSWORD@db.xyz.supabase.co:5432/postgres
    /// (the env variable keeps the password out of the process list).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    url: String,
    /// A schema PostgREST exposes; repeat for several.
    #[arg(long = "schema", value_name = "SCHEMA", default_value = "public")]
    schemas: Vec<String>,
}

/// Runs the tool: prints [`render`] of the functions.
///
/// # Errors
/// [`IntrospectError`], its URL redacted.
pub async fn run(args: IntrospectArgs) -> anyhow::Result<ExitCode> {
    let facts = introspect(&args.url, &args.schemas).await?;
    if facts.is_empty() {
        println!(
            "No functions found in schema(s): {}",
            args.schemas.join(", ")
        );
    } else {
        print!("{}", render(&facts));
    }
    Ok(ExitCode::SUCCESS)
}
