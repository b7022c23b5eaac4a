//! `weft cert ca DIR` makes a certificate authority, and `weft cert issue
//! DIR NAME` a certificate for identity NAME signed by it, so that TLS with
//! identities bound to certificates is one command away (mkcert is the
//! model).
//!
//! Files, all PEM:
//! - `DIR/ca.pem`: the CA certificate, which both sides trust (`--ca`);
//! - `DIR/ca-key.pem`: its key (mode 0600), needed only to issue;
//! - `DIR/NAME.pem`: NAME's certificate, then the CA's (the chain a peer
//!   presents);
//! - `DIR/NAME-key.pem`: NAME's key (mode 0600).
//!
//! NAME's certificate names NAME as its DNS name (subjectAltName) and as
//! its subject CN, and is good for servers and clients alike, so one peer
//! presents it whichever side of a connection it is on. Each command prints
//! one line: what it wrote and how to use it.
//!
//! `weft cert ca` never overwrites a CA: one already in DIR is an error
//! (exit status 1). `weft cert issue` replaces NAME's files. A NAME that is
//! not an identity (1 to 50 characters) and a DNS name, or that would
//! collide with the CA's files, is a usage error (exit status 2).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};

use crate::Failure;

/// The CA certificate's file name in DIR.
const CA_CERT: &str = "ca.pem";
/// The CA key's file name in DIR.
const CA_KEY: &str = "ca-key.pem";
/// How long a CA is valid (ten years).
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long an issued certificate is valid: 825 days, the longest that
/// Apple's platforms accept for a TLS server (mkcert's choice too).
const LEAF_VALIDITY: Duration = Duration::from_secs(825 * 86_400);
/// How far back validity starts, for clocks a little behind this one.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Arguments of `weft cert`.
#[derive(clap::Args, Debug)]
pub(crate) struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CertCommand {
    /// Make a certificate authority: DIR/ca.pem and DIR/ca-key.pem (DIR is
    /// created if missing; an existing CA is never overwritten).
    Ca {
        /// The directory for the CA's files.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a certificate for identity NAME (its DNS name and CN), signed
    /// by the CA in DIR: DIR/NAME.pem (with the chain) and DIR/NAME-key.pem.
    Issue {
        /// The directory holding the CA (see `weft cert ca`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The identity: 1 to 50 characters, a DNS name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs `weft cert`: prints one line saying what was written.
pub(crate) fn run(args: CertArgs) -> Result<(), Failure> {
    let line = match args.command {
        CertCommand::Ca { dir } => make_ca(&dir, SystemTime::now())?,
        CertCommand::Issue { dir, name } => issue(&dir, &name, SystemTime::now())?,
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{line}");
    Ok(())
}

/// Makes a CA in `dir`; returns the line to print.
fn make_ca(dir: &Path, now: SystemTime) -> Result<String, Failure> {
    create_dir(dir)?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(Failure::Run(format!(
                "{} already exists; not overwriting the CA in {}",
                path.display(),
                dir.display()
            )));
        }
    }
    let key = KeyPair::generate().map_err(generating)?;
    let ca = ca_certificate(&key, now)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true, true)?;
    write_file(&cert_path, ca.pem().as_bytes(), false, true)?;
    Ok(format!(
        "made a CA in {dir}: {cert} (what peers trust: --ca {cert}) and {key} \
         (keep it private); issue certificates with: weft cert issue {dir} NAME",
        dir = dir.display(),
        cert = cert_path.display(),
        key = key_path.display(),
    ))
}

/// Issues a certificate for `name` from the CA in `dir`; returns the line
/// to print.
fn issue(dir: &Path, name: &str, now: SystemTime) -> Result<String, Failure> {
    check_name(name).map_err(Failure::Usage)?;
    let (ca_cert_path, ca_key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !ca_cert_path.exists() || !ca_key_path.exists() {
        return Err(Failure::Run(format!(
            "no CA in {dir} (needs {CA_CERT} and {CA_KEY}); make one with: weft cert ca {dir}",
            dir = dir.display()
        )));
    }
    let ca_pem = read_text(&ca_cert_path)?;
    let ca_key = KeyPair::from_pem(&read_text(&ca_key_path)?)
        .map_err(|e| format!("{}: not a private key: {e}", ca_key_path.display()))?;
    // Only the CA's name and key go into what it signs, and both follow
    // from its key: the certificate rebuilt here issues as the one on disk.
    let issuer = ca_certificate(&ca_key, now)?;

    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(generating)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, LEAF_VALIDITY);
    let key = KeyPair::generate().map_err(generating)?;
    let cert = params
        .signed_by(&key, &issuer, &ca_key)
        .map_err(generating)?;
    verify(cert.der(), &ca_pem, name, now).map_err(|e| {
        format!(
            "{} does not verify the new certificate ({e}): do {} and {} belong together?",
            ca_cert_path.display(),
            CA_CERT,
            CA_KEY
        )
    })?;

    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    let mut chain = cert.pem();
    chain.push_str(&ca_pem);
    write_file(&key_path, key.serialize_pem().as_bytes(), true, false)?;
    write_file(&cert_path, chain.as_bytes(), false, false)?;
    Ok(format!(
        "issued {name}'s certificate, signed by {ca}: {cert} (with the chain) and {key}; \
         use: weft peer --ident {name} --cert {cert} --key {key} --ca {ca}",
        ca = ca_cert_path.display(),
        cert = cert_path.display(),
        key = key_path.display(),
    ))
}

/// Whether `name` can be an identity with a certificate: 1 to 50
/// characters, a DNS name (which keeps it a plain file name too), and not
/// one of the CA's own file names.
fn check_name(name: &str) -> Result<(), String> {
    weft_messaging::Identity::new(name).map_err(|e| format!("NAME `{name}`: {e}"))?;
    if DnsName::try_from(name).is_err() || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "NAME `{name}` is not a DNS name (letters, digits, `-`, labels joined by `.`)"
        ));
    }
    if ["ca", "ca-key"].contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "NAME `{name}` would overwrite the CA's own files; choose another"
        ));
    }
    Ok(())
}

/// The CA's certificate for `key`. Its name is `weft CA` and the start of
/// its key identifier, so it follows from the key alone.
fn ca_certificate(key: &KeyPair, now: SystemTime) -> Result<rcgen::Certificate, Failure> {
    let params = |name: DistinguishedName| {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generating)?;
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, now, CA_VALIDITY);
        Ok::<_, Failure>(params)
    };
    let unnamed = params(DistinguishedName::new())?
        .self_signed(key)
        .map_err(generating)?;
    let id: String = unnamed.key_identifier()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "weft");
    name.push(DnType::CommonName, format!("weft CA {id}"));
    params(name)?.self_signed(key).map_err(generating)
}

/// Valid from a little before `now` for `length`.
fn validity(params: &mut CertificateParams, now: SystemTime, length: Duration) {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + length;
}

/// Checks that `cert` chains to the CA certificates in `ca_pem` for
/// `name`, as a TLS client trusting them would.
fn verify(
    cert: &CertificateDer<'_>,
    ca_pem: &str,
    name: &str,
    now: SystemTime,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier as _;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| e.to_string())?;
        roots.add(ca).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    verifier
        .verify_server_cert(
            cert,
            &[],
            &server_name,
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn generating(e: rcgen::Error) -> Failure {
    Failure::Run(format!("generating a certificate: {e}"))
}

/// Creates `dir` (and its parents) if missing; a new directory is private
/// to its owner.
fn create_dir(dir: &Path) -> Result<(), Failure> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Failure::Run(format!("creating {}: {e}", dir.display())))
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Run(format!("reading {}: {e}", path.display())))
}

/// Writes `bytes` to `path`: a key readable by its owner only (mode 0600,
/// also when the file was there before), and only when it does not exist
/// yet with `new`.
fn write_file(path: &Path, bytes: &[u8], secret: bool, new: bool) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::Run(format!("writing {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(if secret { 0o600 } else { 0o644 });
        let mut file = options.open(path).map_err(failed)?;
        if secret {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
        }
        file.write_all(bytes).map_err(failed)
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        options
            .open(path)
            .map_err(failed)?
            .write_all(bytes)
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_identities_are_refused() {
        for good in ["alice", "node-1.example.org", "a", &"x".repeat(50)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = "x".repeat(51);
        let cases = [
            ("", "cannot be empty"),
            (long.as_str(), "51 characters"),
            ("a b", "not a DNS name"),
            ("../etc", "not a DNS name"),
            ("a/b", "not a DNS name"),
            ("127.0.0.1", "not a DNS name"),
            ("ca", "CA's own files"),
            ("CA-key", "CA's own files"),
        ];
        for (bad, why) in cases {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn the_rebuilt_ca_issues_as_the_one_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        make_ca(dir.path(), now).unwrap();
        // A day later the CA is rebuilt with other dates; what it signs
        // still chains to the certificate on disk.
        let later = now + Duration::from_secs(86_400);
        issue(dir.path(), "bob", later).unwrap();
        let chain = std::fs::read_to_string(dir.path().join("bob.pem")).unwrap();
        let ca = std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap();
        let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        verify(&leaf, &ca, "bob", later).unwrap();
        assert!(verify(&leaf, &ca, "carol", later).is_err());
        // Past its validity it no longer verifies.
        assert!(verify(&leaf, &ca, "bob", later + LEAF_VALIDITY * 2).is_err());
    }

    #[test]
    fn a_key_from_another_ca_is_caught() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let now = SystemTime::now();
        make_ca(one.path(), now).unwrap();
        make_ca(two.path(), now).unwrap();
        std::fs::copy(two.path().join(CA_KEY), one.path().join(CA_KEY)).unwrap();
        let Err(Failure::Run(e)) = issue(one.path(), "alice", now) else {
            panic!("issued with a mismatched key");
        };
        assert!(e.contains("belong together"), "{e}");
        assert!(!one.path().join("alice.pem").exists());
    }
}
