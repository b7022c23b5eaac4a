//! The `weft` binary as users run it.

use std::process::Command;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

#[test]
fn demo_delivers_everything_and_exits_zero() {
    let out = weft().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}\nstdout:\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for transport in [
        "tcp v4",
        "tcp v6",
        "tls",
        "mutual tls",
        "quic",
        "mutual quic",
        "unix path",
        "unix abstract",
        "unix+tls",
        "udp",
    ] {
        assert!(
            stdout.contains(&format!("[{transport}]")),
            "missing {transport}:\n{stdout}"
        );
    }
    assert!(stdout.contains("client certificate verified"));
    assert!(stdout.contains("reconnected on its own"));
    assert!(
        stdout.contains("all 60 packets delivered over 10 transports"),
        "{stdout}"
    );
    for line in [
        "alice sends to bob, who does not exist yet: queued (1 waiting)",
        "bob receives \"hello bob\" from alice",
        "alice restarts: 3 messages for carol loaded from SQLite",
        "carol receives \"order 3\"",
        "w1 replies 144",
        "w2 works on \"job 4\"",
        "hub publishes weather.today to 1 peer(s), sport.today to 0",
        "w2 receives \"sunny\" on weather.today",
        "teller calls calc.add(2, 40) = 42",
        "type:      weft::demo::rpc::LedgerError",
        "caused by: no such file",
        "demo complete.",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{stdout}");
    }
}

#[test]
fn bad_arguments_get_one_line_and_exit_2() {
    let out = weft().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-command"));
}
