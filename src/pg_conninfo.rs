//! libpq's `key=value` connection strings, scanned as tokio-postgres (and libpq) read
//! them: whitespace between pairs and around `=`, values bare or in single quotes, a
//! backslash escaping the next character. `pg_tls.rs` takes out the settings
//! tokio-postgres does not know and hands on the rest byte for byte. Splitting on
//! whitespace instead missed `sslmode = require` and collapsed runs of spaces inside a
//! quoted value (a password `'a  b'` reached the server as `'a b'`).

use std::iter::Peekable;
use std::ops::Range;
use std::str::CharIndices;

/// One `key=value` of a connection string.
#[derive(Debug, PartialEq, Eq)]
pub struct Pair<'a> {
    pub key: &'a str,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// Where the whole pair lies in the string.
    pub span: Range<usize>,
}

/// The pairs of `s`, or `None` when tokio-postgres would not parse it either (a key
/// without `=`, a missing value, an unclosed quote); it then says where.
pub fn pairs(s: &str) -> Option<Vec<Pair<'_>>> {
    let mut scan = Scan {
        s,
        it: s.char_indices().peekable(),
    };
    let mut pairs = Vec::new();
    loop {
        scan.skip(char::is_whitespace);
        let start = scan.at();
        let key = scan.skip(|c| !c.is_whitespace() && c != '=');
        if key.is_empty() {
            return Some(pairs);
        }
        scan.skip(char::is_whitespace);
        if !scan.eat('=') {
            return None;
        }
        scan.skip(char::is_whitespace);
        let value = if scan.eat('\'') {
            let value = scan.value(|c| c == '\'');
            if !scan.eat('\'') {
                return None;
            }
            value
        } else {
            let value = scan.value(char::is_whitespace);
            if value.is_empty() {
                return None;
            }
            value
        };
        pairs.push(Pair {
            key,
            value,
            span: start..scan.at(),
        });
    }
}

struct Scan<'a> {
    s: &'a str,
    it: Peekable<CharIndices<'a>>,
}

impl<'a> Scan<'a> {
    /// The byte offset of the next character (the length at the end).
    fn at(&mut self) -> usize {
        self.it.peek().map_or(self.s.len(), |&(i, _)| i)
    }

    /// Skips the characters `f` accepts; gives what was skipped.
    fn skip(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.at();
        while self.it.next_if(|&(_, c)| f(c)).is_some() {}
        &self.s[start..self.at()]
    }

    fn eat(&mut self, target: char) -> bool {
        self.it.next_if(|&(_, c)| c == target).is_some()
    }

    /// Characters up to one `end` accepts, a backslash taking the next as it is.
    fn value(&mut self, end: impl Fn(char) -> bool) -> String {
        let mut value = String::new();
        while let Some((_, c)) = self.it.next_if(|&(_, c)| !end(c)) {
            if c == '\\' {
                value.extend(self.it.next().map(|(_, c)| c));
            } else {
                value.push(c);
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_values(s: &str) -> Option<Vec<(&str, String)>> {
        pairs(s).map(|p| p.into_iter().map(|p| (p.key, p.value)).collect())
    }

    /// Spaces around `=`, quotes and escapes read as libpq reads them; each span covers
    /// its pair exactly.
    #[test]
    fn pairs_read_as_libpq_reads_them() {
        let s = "host=h  sslmode = require password='a  b\\'c' dbname=x\\ y";
        assert_eq!(
            keys_values(s).unwrap(),
            [
                ("host", "h".to_owned()),
                ("sslmode", "require".to_owned()),
                ("password", "a  b'c".to_owned()),
                ("dbname", "x y".to_owned()),
            ]
        );
        let spans: Vec<&str> = pairs(s)
            .unwrap()
            .iter()
            .map(|p| &s[p.span.clone()])
            .collect();
        assert_eq!(
            spans,
            [
                "host=h",
                "sslmode = require",
                "password='a  b\\'c'",
                "dbname=x\\ y"
            ]
        );
        assert_eq!(keys_values("  ").unwrap(), []);
        assert_eq!(keys_values("a=''").unwrap(), [("a", String::new())]);
    }

    /// What tokio-postgres refuses is refused here too, and the reverse.
    #[test]
    fn malformed_strings_are_refused_as_tokio_postgres_refuses_them() {
        for s in [
            "host",
            "host=",
            "host= ",
            "host=h dbname",
            "password='open",
            "=h",
            "host=h user=u",
            "host = 'h' port=5432",
            "user=a\\",
        ] {
            let ours = pairs(s).is_some();
            let theirs = s.parse::<tokio_postgres::Config>().is_ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }
}
