//! `weft cert ca` and `weft cert issue` as users run them, and the files
//! they write put to work: TLS over loopback with weft-link.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weft_link::tls::{ClientAuth, TlsClientConfig, TlsIdentity, TlsServerConfig, TrustAnchors};
use weft_link::{ConnectOptions, Link, LinkConfig, ListenOptions};

/// The bound on every wait: for a `weft` process, and for a connection.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `weft` with these arguments to completion, within [`WAIT`].
fn run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("weft {args:?} still running after {WAIT:?}"))
        .expect("weft's output")
}

/// Asserts success and one line on stdout, which it returns.
fn one_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts failure with `code` and one line on stderr naming `needle`.
fn one_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(out.stdout.is_empty());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `weft cert` leaves a CA and two identities in `dir`.
fn make_pki(dir: &Path) {
    let line = one_line(&run(&["cert", "ca", path(dir)]));
    let ca = dir.join("ca.pem");
    assert!(line.contains(path(&ca)), "{line}");
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    for name in ["alice", "bob"] {
        let line = one_line(&run(&["cert", "issue", path(dir), name]));
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        assert!(
            line.contains(path(&cert)) && line.contains(path(&key)),
            "{line}"
        );
        assert!(line.contains("--cert") && line.contains("--ca"), "{line}");
        assert_eq!(mode(&key), 0o600, "{name}");
        // The leaf, then the CA.
        let chain = std::fs::read_to_string(&cert).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
        assert!(chain.ends_with(&std::fs::read_to_string(&ca).unwrap()));
    }
}

fn server(dir: &Path, name: &str, client_auth: ClientAuth) -> TlsServerConfig {
    let identity = TlsIdentity::from_pem_files(
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
    .unwrap();
    TlsServerConfig::new(identity, client_auth).unwrap()
}

fn client(dir: &Path, presenting: Option<&str>, expecting: &str) -> TlsClientConfig {
    let identity = presenting.map(|name| {
        TlsIdentity::from_pem_files(
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        )
        .unwrap()
    });
    TlsClientConfig::new(anchors(dir), identity)
        .unwrap()
        .with_server_name(expecting)
}

fn anchors(dir: &Path) -> TrustAnchors {
    TrustAnchors::from_pem_file(dir.join("ca.pem")).unwrap()
}

/// Whether a TLS connection over loopback comes up between these sides.
async fn connects(server: TlsServerConfig, client: TlsClientConfig) -> bool {
    let (link, _events) = Link::new(LinkConfig::default());
    let listening = link
        .listen_with("tls://127.0.0.1:0", ListenOptions::tls(server))
        .await
        .unwrap();
    let attempt = link.connect_once(listening.address.to_string(), ConnectOptions::tls(client));
    let up = tokio::time::timeout(WAIT, attempt)
        .await
        .expect("the handshake ends in time")
        .is_ok();
    link.close().await;
    up
}

#[tokio::test]
async fn issued_certificates_work_for_tls_and_only_for_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki);

    // alice serves; a client trusting ca.pem reaches her by her name.
    assert!(
        connects(
            server(&pki, "alice", ClientAuth::None),
            client(&pki, None, "alice")
        )
        .await
    );
    // bob's certificate does not pass for alice.
    assert!(
        !connects(
            server(&pki, "bob", ClientAuth::None),
            client(&pki, None, "alice")
        )
        .await
    );
    // Mutual TLS: alice requires a client certificate from the CA, and
    // bob's (good for clients too) is one.
    let required = ClientAuth::Required(anchors(&pki));
    assert!(
        connects(
            server(&pki, "alice", required),
            client(&pki, Some("bob"), "alice")
        )
        .await
    );
}

#[test]
fn an_existing_ca_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    one_line(&run(&["cert", "ca", path(dir.path())]));
    let before = std::fs::read(dir.path().join("ca-key.pem")).unwrap();
    one_error(&run(&["cert", "ca", path(dir.path())]), 1, "ca.pem");
    assert_eq!(
        std::fs::read(dir.path().join("ca-key.pem")).unwrap(),
        before
    );
}

#[test]
fn bad_names_and_a_missing_ca_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = path(dir.path());
    one_error(&run(&["cert", "issue", d, "alice"]), 1, "weft cert ca");
    one_line(&run(&["cert", "ca", d]));
    let long = "x".repeat(51);
    for (name, needle) in [
        ("", "empty"),
        (long.as_str(), "51 characters"),
        ("not a name", "DNS name"),
        ("../escape", "DNS name"),
        ("ca", "CA's own files"),
    ] {
        one_error(&run(&["cert", "issue", d, name]), 2, needle);
    }
    // Nothing was written for them.
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["ca-key.pem", "ca.pem"]);
}
