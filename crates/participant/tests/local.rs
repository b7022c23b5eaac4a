//! The local socket serves the participant's own user only.

mod common;

use std::time::Duration;

use common::free_port;

use weft_participant::local::{LocalClient, LocalServer};
use weft_participant::{Participant, ParticipantConfig, ParticipantError};

const WAIT: Duration = Duration::from_secs(5);

/// Where the inner test (run as another user) attaches.
const ADDRESS_VAR: &str = "WEFT_TEST_LOCAL_ADDRESS";

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn another_user_is_refused_and_our_own_is_served() {
    let participant = Participant::start(ParticipantConfig::loopback(free_port()))
        .await
        .unwrap();
    let address = format!(
        "unix://@weft-test-local-{}-{}",
        std::process::id(),
        free_port()
    );
    let server = LocalServer::start(participant.clone(), &address)
        .await
        .unwrap();

    // Our own user attaches.
    let client = LocalClient::connect(server.address(), WAIT).await.unwrap();
    assert_eq!(client.identity(), participant.identity().as_str());

    if !is_root() {
        eprintln!("SKIPPED: attaching as another user needs root to switch users");
        return;
    }
    // The same test binary, run as `nobody`, tries to attach.
    let exe = std::env::current_exe().unwrap();
    let output = {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(exe);
        child
            .args([
                "--exact",
                "inner_attach_as_another_user",
                "--ignored",
                "--nocapture",
            ])
            .env(ADDRESS_VAR, server.address())
            .uid(65534)
            .gid(65534);
        tokio::task::spawn_blocking(move || child.output())
            .await
            .unwrap()
    };
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("SKIPPED: user nobody cannot run the test binary here: {e}");
            return;
        }
        Err(e) => panic!("running the test as nobody: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("REFUSED") && stdout.contains("uid 65534"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.close().await;
    participant.close().await;
}

#[tokio::test]
#[ignore = "runs only as another user, from another_user_is_refused_and_our_own_is_served"]
async fn inner_attach_as_another_user() {
    let address = std::env::var(ADDRESS_VAR).expect("run by the outer test");
    match LocalClient::connect(&address, WAIT).await {
        Err(ParticipantError::LocalRefused(reason)) => println!("REFUSED {reason}"),
        Ok(_) => println!("ATTACHED"),
        Err(e) => println!("ERROR {e}"),
    }
}

#[tokio::test]
async fn a_path_socket_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let participant = Participant::start(ParticipantConfig::loopback(free_port()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("participant.sock");
    let server = LocalServer::start(participant.clone(), &format!("unix://{}", path.display()))
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    server.close().await;
    participant.close().await;
}
