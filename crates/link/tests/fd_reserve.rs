//! A listener that runs out of file descriptors (EMFILE) closes the
//! connection waiting to be accepted instead of leaving it hanging, and
//! accepts again once descriptors free up (issue 16). Alone in its test
//! binary: it lowers the process's descriptor limit.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use weft_link::{Link, LinkConfig};

const WAIT: Duration = Duration::from_secs(10);

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn set_soft_limit(soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
    }
    old
}

#[tokio::test(flavor = "current_thread")]
async fn out_of_descriptors_the_waiting_connection_is_closed_and_accepting_resumes() {
    let (server, mut events) = Link::new(LinkConfig::default());
    let at = server.listen("tcp://127.0.0.1:0").await.unwrap().address;
    let addr = at.socket_addr().unwrap();
    // Client sockets made before the limit drops: connecting them needs
    // no new descriptor, accepting them does.
    let sockets: Vec<TcpSocket> = (0..8).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let old = set_soft_limit(open_descriptors() + 2);
    let mut clients: Vec<TcpStream> = Vec::new();
    for s in sockets {
        clients.push(s.connect(addr).await.unwrap());
    }
    // Each one is either accepted or, once descriptors ran out, closed.
    let mut buf = [0u8; 1];
    let mut refused = 0;
    for c in &mut clients {
        if let Ok(r) = timeout(Duration::from_millis(300), c.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)));
            refused += 1;
        }
    }
    assert!(refused >= 1, "no connection was refused");
    assert!(server.stats().connections_refused >= 1);
    set_soft_limit(old.rlim_cur);
    drop(clients);
    // Descriptors are back: the listener accepts again.
    let before = server.stats().connections_opened;
    let _again = TcpStream::connect(addr).await.unwrap();
    timeout(WAIT, async {
        while server.stats().connections_opened == before {
            events.recv().await;
        }
    })
    .await
    .expect("accepted again");
}
