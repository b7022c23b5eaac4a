//! The RPC layer: a typed call, then a call that fails on the server and
//! comes back as a typed remote error with its context.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use weft_messaging::{Identity, Messaging, MessagingConfig};
use weft_rpc::{CallOptions, Method, Rpc, RpcConfig, RpcError};

use super::{DemoResult, WAIT};

/// The service, declared once; both peers use it.
const ADD: Method<(i32, i32), i32> = Method::new("calc", "add");
const OPEN: Method<String, u64> = Method::new("ledger", "open");

/// The server's error, with a cause that has a cause.
#[derive(Debug)]
struct LedgerError {
    name: String,
    cause: StorageError,
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open ledger `{}`", self.name)
    }
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

#[derive(Debug)]
struct StorageError(std::io::Error);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("storage unavailable")
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    c.link.reconnect = weft_link::ReconnectPolicy::fixed(Duration::from_millis(50));
    c
}

async fn peer(name: &str) -> DemoResult<Rpc> {
    let messaging = Messaging::new(Identity::new(name)?, config()).await?;
    Ok(Rpc::new(messaging, RpcConfig::default())?)
}

pub(crate) async fn run() -> DemoResult<()> {
    println!("== rpc: typed calls and remote errors ==\n");
    let tag = "[rpc]";
    let server = peer("ledger").await?;
    server.register(ADD, |(a, b)| async move { Ok::<_, Infallible>(a + b) });
    server.register(OPEN, |name: String| async move {
        Err::<u64, _>(LedgerError {
            name,
            cause: StorageError(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            )),
        })
    });
    let at = server
        .messaging()
        .link()
        .listen("tcp://127.0.0.1:0")
        .await?
        .address;
    println!("{tag:<16} ledger serves calc.add and ledger.open on {at}");

    let client = peer("teller").await?;
    client.messaging().link().connect(&at)?;
    let options = CallOptions::timeout(WAIT);
    let sum = client
        .call_with(server.identity(), ADD, (2, 40), options)
        .await?;
    println!("{tag:<16} teller calls calc.add(2, 40) = {sum}");

    match client
        .call_with(server.identity(), OPEN, "main".to_string(), options)
        .await
    {
        Err(RpcError::Remote(e)) => {
            println!("{tag:<16} teller calls ledger.open(\"main\"): {}", e.kind);
            println!("{tag:<16}   type:      {}", e.type_name);
            println!("{tag:<16}   message:   {}", e.message);
            for line in &e.context {
                println!("{tag:<16}   caused by: {line}");
            }
        }
        Ok(n) => return Err(format!("ledger.open should have failed, got {n}").into()),
        Err(e) => return Err(e.into()),
    }
    let s = server.stats();
    println!(
        "{tag:<16} the ledger ran {} calls and keeps serving\n",
        s.calls_executed
    );
    Ok(())
}
