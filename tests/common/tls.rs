//! Throw-away certificates for the TLS tests (Redis and PostgreSQL), made by the
//! `openssl` CLI (`.ci/run` installs it): a CA and a server certificate it signed.

use std::path::Path;
use std::process::Command;

use super::process::run_ok;

/// Writes `ca.pem` / `ca.key` (a fresh CA) and `server.pem` / `server.key` (signed by
/// it, for `localhost` and 127.0.0.1) into `dir`; P-256 keys, valid two days. The
/// server key is readable by its owner only (PostgreSQL refuses it otherwise).
pub fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir for certificates");
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=codette-cache test CA",
            ],
            &key[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &key[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod server.key");
}
