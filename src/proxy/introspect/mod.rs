//! `codette-cache introspect`: reads the functions PostgREST exposes from `pg_proc` and
//! suggests how each may be cached. The daemon applies the same rules at start-up for
//! `scope = "auto"` (`[proxy] introspect_url`).
//!
//! The rules are safety rules: a cache must never give one user an answer computed for
//! another. So, in order:
//!
//! 1. VOLATILE: never cached. It may change data or answer differently each call.
//! 2. Reads the caller's user (`auth.uid()`, `auth.jwt()`, `request.jwt…` settings):
//!    scope `user`, one answer per JWT `sub`.
//! 3. Reads the caller's role (`current_user`, `current_role`, `session_user`,
//!    `auth.role()`): scope `role`.
//! 4. SECURITY DEFINER and neither of the above: scope `shared`. It runs as its owner,
//!    whoever calls.
//! 5. Otherwise (SECURITY INVOKER): scope `user`, because row-level security policies on
//!    the tables it reads run as the caller and may depend on who that is.
//!
//! "Reads" means the body mentions it, directly or through another function it calls by
//! name (followed across every schema). What the text cannot show stays the operator's
//! to check: dynamic SQL (`EXECUTE`), views that read the JWT, and row-level security
//! applied to a SECURITY DEFINER function's owner. Names are matched without regard to
//! case, spaces or double quotes; a false match only narrows a scope.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use crate::pg_tls::{self, PgConnect};
use crate::proxy::Scope;
pub use report::{IntrospectArgs, render, run};

mod report;
use crate::secret::{REDACTED, redact_url};

/// Limit for connecting, and again for the queries.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The `ttl_secs` the suggested blocks start from.
const SUGGESTED_TTL_SECS: u64 = 300;

/// Mentions that make a body depend on the caller's user.
const USER_MARKERS: &[&str] = &["auth.uid(", "auth.jwt(", "request.jwt"];
/// Mentions that make a body depend on the caller's role.
const ROLE_MARKERS: &[&str] = &["current_user", "current_role", "session_user", "auth.role("];

/// `pg_proc.provolatile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

impl Volatility {
    pub fn as_str(self) -> &'static str {
        match self {
            Volatility::Immutable => "IMMUTABLE",
            Volatility::Stable => "STABLE",
            Volatility::Volatile => "VOLATILE",
        }
    }
}

/// What the catalog says about one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFacts {
    pub schema: String,
    pub name: String,
    /// `pg_get_function_identity_arguments`, e.g. `input_prompt text, n integer`.
    pub args: String,
    pub volatility: Volatility,
    pub security_definer: bool,
    /// The body reads the caller's user id or JWT.
    pub reads_user: bool,
    /// The body reads the caller's role.
    pub reads_role: bool,
}

impl FunctionFacts {
    /// Who may share a cached answer, by the rules at the top of this file; `None`:
    /// never cache.
    pub fn suggested_scope(&self) -> Option<Scope> {
        if self.volatility == Volatility::Volatile {
            None
        } else if self.reads_user {
            Some(Scope::User)
        } else if self.reads_role {
            Some(Scope::Role)
        } else if self.security_definer {
            Some(Scope::Shared)
        } else {
            Some(Scope::User)
        }
    }

    /// Why [`Self::suggested_scope`] says what it says, for people.
    fn reason(&self) -> &'static str {
        if self.volatility == Volatility::Volatile {
            "VOLATILE"
        } else if self.reads_user {
            "reads the caller's user (auth.uid(), auth.jwt() or request.jwt)"
        } else if self.reads_role {
            "reads the caller's role (current_user or auth.role())"
        } else if self.security_definer {
            "SECURITY DEFINER and reads no identity: one answer for every caller"
        } else {
            "SECURITY INVOKER: row-level security may depend on the caller"
        }
    }

    fn qualified(&self) -> String {
        format!("{}.{}({})", self.schema, self.name, self.args)
    }
}

/// Why the catalog could not be read. URLs in messages have their password redacted.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// Not a connection string tokio-postgres understands.
    #[error("{url} is not a PostgreSQL URL (postgres://user:password@host:port/db): {reason}")]
    BadUrl { url: String, reason: String },
    /// Refused, unreachable, or authentication failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// No answer in time.
    #[error("{url} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout { url: String },
    /// The catalog query failed.
    #[error("cannot read the functions from pg_proc: {reason}")]
    Query { reason: String },
}

/// Reads every plain function (`prokind = 'f'`) of `schemas`, sorted by schema, name
/// and arguments.
///
/// # Errors
/// [`IntrospectError`] for a bad URL, a failed connection or query, or a timeout.
pub async fn introspect(
    url: &str,
    schemas: &[String],
) -> Result<Vec<FunctionFacts>, IntrospectError> {
    let shown = redact_url(url);
    let PgConnect { mut config, tls } =
        pg_tls::connect_options(url).map_err(|e| IntrospectError::BadUrl {
            url: shown.clone(),
            reason: describe(&e, url),
        })?;
    config.connect_timeout(TIMEOUT);
    config.application_name("codette-cache introspect");
    let timeout = || IntrospectError::Timeout { url: shown.clone() };
    let (client, connection) = tokio::time::timeout(TIMEOUT, config.connect(tls))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| IntrospectError::Connect {
            url: shown.clone(),
            reason: describe(&e, url),
        })?;
    let connection = tokio::spawn(async move {
        // Ends when `client` is dropped; an error then is only the closed connection.
        let _ = connection.await;
    });
    let rows = tokio::time::timeout(TIMEOUT, read_all(&client))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| IntrospectError::Query {
            reason: describe(&e, url),
        });
    drop(client);
    let _ = connection.await;
    let mut all = rows?;
    propagate(&mut all);
    let wanted: HashSet<&str> = schemas.iter().map(String::as_str).collect();
    Ok(all
        .into_iter()
        .filter(|r| wanted.contains(r.facts.schema.as_str()))
        .map(|r| r.facts)
        .collect())
}

/// One function with its normalised body, kept for the propagation pass.
struct Row {
    facts: FunctionFacts,
    body: String,
}

/// Every user function (all schemas but the system ones), so that a function calling a
/// helper that reads `auth.uid()` is seen to read it too.
async fn read_all(client: &tokio_postgres::Client) -> Result<Vec<Row>, tokio_postgres::Error> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    // PostgreSQL 14+ keeps `BEGIN ATOMIC` bodies in prosqlbody, with prosrc empty.
    let body = if version >= 140_000 {
        "CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) ELSE p.prosrc END"
    } else {
        "p.prosrc"
    };
    let sql = format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), \
                p.provolatile::text, p.prosecdef, coalesce({body}, '') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prokind = 'f' AND n.nspname <> 'information_schema' \
           AND n.nspname NOT LIKE 'pg\\_%' \
         ORDER BY 1, 2, 3"
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let body = normalise(row.get::<_, &str>(5));
            let volatility = match row.get::<_, &str>(3) {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            Row {
                facts: FunctionFacts {
                    schema: row.get(0),
                    name: row.get(1),
                    args: row.get(2),
                    volatility,
                    security_definer: row.get(4),
                    reads_user: USER_MARKERS.iter().any(|m| body.contains(m)),
                    reads_role: ROLE_MARKERS.iter().any(|m| body.contains(m)),
                },
                body,
            }
        })
        .collect())
}

/// Lower case, without double quotes or the spaces around `.` and before `(`:
/// `"auth". UID ()` reads `auth.uid(`. Other spaces stay, one each, as word breaks.
fn normalise(body: &str) -> String {
    let mut collapsed: Vec<char> = Vec::with_capacity(body.len());
    for c in body
        .chars()
        .filter(|c| *c != '"')
        .flat_map(char::to_lowercase)
    {
        let c = if c.is_whitespace() { ' ' } else { c };
        if !(c == ' ' && collapsed.last().is_none_or(|p| *p == ' ' || *p == '.')) {
            if matches!(c, '.' | '(') && collapsed.last() == Some(&' ') {
                collapsed.pop();
            }
            collapsed.push(c);
        }
    }
    collapsed.into_iter().collect()
}

/// Whether `body` (normalised) calls a function named `name`, qualified or not.
fn calls(body: &str, name: &str) -> bool {
    let call = format!("{}(", name.to_lowercase());
    body.match_indices(&call).any(|(at, _)| {
        !body[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
    })
}

/// Spreads `reads_user`/`reads_role` from a function to its callers, until nothing
/// changes (a call chain of any length).
fn propagate(rows: &mut [Row]) {
    loop {
        let user: HashSet<String> = rows
            .iter()
            .filter(|r| r.facts.reads_user)
            .map(|r| r.facts.name.clone())
            .collect();
        let role: HashSet<String> = rows
            .iter()
            .filter(|r| r.facts.reads_role)
            .map(|r| r.facts.name.clone())
            .collect();
        let mut changed = false;
        for row in rows.iter_mut() {
            let f = &mut row.facts;
            if !f.reads_user && user.iter().any(|n| calls(&row.body, n)) {
                f.reads_user = true;
                changed = true;
            }
            if !f.reads_role && role.iter().any(|n| calls(&row.body, n)) {
                f.reads_role = true;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The error and its causes, with the URL's password (raw or percent-decoded) removed.
fn describe(error: &dyn std::error::Error, url: &str) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    if let Some(password) = password_of(url) {
        text = text.replace(password, REDACTED);
        let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
        if !decoded.is_empty() {
            text = text.replace(decoded.as_ref(), REDACTED);
        }
    }
    text
}

/// The password part of `scheme://user:password@host…`, if any.
fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then_some(password)
}

#[cfg(test)]
mod tests;
