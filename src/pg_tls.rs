//! TLS for every PostgreSQL connection the daemon makes (the origin's pool, the LISTEN
//! session, introspection), decided by the URL as libpq decides it, so a connection
//! string copied from Supabase or `psql` means the same here:
//!
//! | `sslmode`            | TLS                         | the server's certificate          |
//! |----------------------|-----------------------------|-----------------------------------|
//! | `disable`            | never                       | -                                 |
//! | `prefer` (default)   | when the server offers it   | not checked                       |
//! | `require`            | always                      | not checked                       |
//! | `verify-ca`          | always                      | chains to the roots               |
//! | `verify-full`        | always                      | chains to the roots, names the host |
//!
//! The roots are the PEM file `sslrootcert` names, else the system's store. A given
//! `sslrootcert` is always used: with `require` (as libpq), `prefer` or no `sslmode` it
//! means `verify-ca` (libpq's `prefer` would skip the check, or fall back to plain; an
//! operator who names roots wants them checked). tokio-postgres knows only
//! `disable`/`prefer`/`require` and no `sslrootcert`: both are read here and the URL
//! handed on without them. `allow` (plain first) is refused: say `prefer`.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A URL's connection settings and the TLS to connect with.
pub struct PgConnect {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Why a URL's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error(transparent)]
    Url(#[from] tokio_postgres::Error),
    #[error(
        "sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full \
         (allow is not supported: use prefer)"
    )]
    Mode(String),
    #[error("{0} is not UTF-8 once percent-decoded")]
    Encoding(&'static str),
    #[error("sslrootcert {path:?}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("no trusted roots for sslmode={mode}: the system store is empty; give sslrootcert")]
    NoRoots { mode: &'static str },
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Chain,
    ChainAndName,
}

/// Reads `url` (a `postgres://` URL or a `key=value` string) with its TLS settings.
///
/// # Errors
/// [`PgTlsError`] for a URL tokio-postgres refuses, an unknown `sslmode`, or roots that
/// cannot be read.
pub fn connect_options(url: &str) -> Result<PgConnect, PgTlsError> {
    let (rest, mode, root) = take_tls_options(url)?;
    let mut config: tokio_postgres::Config = rest.parse()?;
    let (ssl, check) = match (mode.as_deref(), &root) {
        (None | Some("prefer"), None) => (SslMode::Prefer, Check::None),
        (None | Some("prefer" | "require"), Some(_)) | (Some("verify-ca"), _) => {
            (SslMode::Require, Check::Chain)
        }
        (Some("disable"), _) => (SslMode::Disable, Check::None),
        (Some("require"), None) => (SslMode::Require, Check::None),
        (Some("verify-full"), _) => (SslMode::Require, Check::ChainAndName),
        (Some(other), _) => return Err(PgTlsError::Mode(other.to_owned())),
    };
    config.ssl_mode(ssl);
    let tls = MakeRustlsConnect::new(client_config(check, root.as_deref())?);
    Ok(PgConnect { config, tls })
}

/// Takes `sslmode` and `sslrootcert` out of `url`; gives the rest and the two values.
fn take_tls_options(url: &str) -> Result<(String, Option<String>, Option<String>), PgTlsError> {
    let (mut mode, mut root) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "sslmode" => &mut mode,
                "sslrootcert" => &mut root,
                _ => {
                    kept.push(pair);
                    continue;
                }
            };
            // As libpq: percent-decoded, `+` is a plus.
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| PgTlsError::Encoding(static_name(name)))?;
            *slot = Some(decoded.into_owned());
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    // A string tokio-postgres cannot parse goes on whole: it says where it is wrong.
    let Some(pairs) = crate::pg_conninfo::pairs(url) else {
        return Ok((url.to_owned(), None, None));
    };
    // The rest byte for byte; a pair taken out takes the blanks before it along.
    let mut rest = String::with_capacity(url.len());
    let (mut kept_to, mut previous_end) = (0, 0);
    for pair in pairs {
        let slot = match pair.key {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            _ => {
                previous_end = pair.span.end;
                continue;
            }
        };
        rest.push_str(&url[kept_to..previous_end]);
        (kept_to, previous_end) = (pair.span.end, pair.span.end);
        *slot = Some(pair.value);
    }
    rest.push_str(&url[kept_to..]);
    Ok((rest, mode, root))
}

/// The option an error names.
fn static_name(name: &str) -> &'static str {
    if name == "sslmode" {
        "sslmode"
    } else {
        "sslrootcert"
    }
}

fn client_config(check: Check, root: Option<&str>) -> Result<rustls::ClientConfig, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::None => Arc::new(Partial {
            chain: None,
            algorithms,
        }),
        Check::Chain | Check::ChainAndName => {
            let roots = roots(root, check)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| PgTlsError::RootCert {
                    path: root.unwrap_or("(system store)").to_owned(),
                    reason: e.to_string(),
                })?;
            if check == Check::Chain {
                Arc::new(Partial {
                    chain: Some(webpki),
                    algorithms,
                })
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The roots `sslrootcert` names, or the system's.
fn roots(path: Option<&str>, check: Check) -> Result<RootCertStore, PgTlsError> {
    let mut store = RootCertStore::empty();
    match path {
        Some(path) => {
            let failed = |reason: String| PgTlsError::RootCert {
                path: path.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| failed(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(e.to_string()))?;
            if certs.is_empty() {
                return Err(failed("no PEM certificate in the file".into()));
            }
            for cert in certs {
                store.add(cert).map_err(|e| failed(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let mode = if check == Check::Chain {
                    "verify-ca"
                } else {
                    "verify-full"
                };
                return Err(PgTlsError::NoRoots { mode });
            }
        }
    }
    Ok(store)
}

/// The checks rustls's own verifier (used as it is for `verify-full`) does not offer:
/// none of the certificate (`prefer` or `require` without roots, as libpq), or its chain
/// without its names (`verify-ca`). The handshake's signature is always checked, so the
/// key is the certificate's.
struct Partial {
    /// The chain check of `verify-ca`; `None` checks no certificate.
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partial")
            .field("chain", &self.chain.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for Partial {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>, Option<String>) {
        take_tls_options(url).expect("splits")
    }

    /// `sslmode` and `sslrootcert` are taken out of both URL forms; the rest is kept in
    /// order, and a percent-encoded path is decoded.
    #[test]
    fn tls_options_are_taken_out_of_the_url() {
        assert_eq!(
            split(
                "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem"
            ),
            (
                "postgres://u:p@h:5432/db?application_name=x".into(),
                Some("verify-full".into()),
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgresql://h/db?sslmode=require"),
            ("postgresql://h/db".into(), Some("require".into()), None)
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".into(), None, None)
        );
        assert_eq!(
            split("host=h sslmode=verify-ca dbname=d sslrootcert=/ca.pem"),
            (
                "host=h dbname=d".into(),
                Some("verify-ca".into()),
                Some("/ca.pem".into())
            )
        );
        // libpq's spelling: blanks around `=`, quotes, escapes; the rest kept as written.
        assert_eq!(
            split("sslmode = verify-full  password='a  b' sslrootcert='/a b.pem' port=1"),
            (
                "  password='a  b' port=1".into(),
                Some("verify-full".into()),
                Some("/a b.pem".into())
            )
        );
    }

    /// Each mode gives tokio-postgres the mode it knows; unknown modes and unreadable
    /// roots are errors that say what to change.
    #[test]
    fn modes_map_as_libpq_means_them() {
        let mode = |url: &str| connect_options(url).map(|c| c.config.get_ssl_mode());
        assert_eq!(mode("postgres://h/db").unwrap(), SslMode::Prefer);
        assert_eq!(
            mode("postgres://h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=require").unwrap(),
            SslMode::Require
        );
        let e = mode("postgres://h/db?sslmode=allow")
            .unwrap_err()
            .to_string();
        assert!(e.contains("use prefer"), "{e}");
        let e = mode("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = mode(&format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
