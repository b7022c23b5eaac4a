//! `weft`: the command-line face of weft.
//!
//! `weft demo` walks through each layer; later subcommands expose each
//! layer to people and scripts. Bad arguments print a one-line error and
//! exit with status 2.

mod cert;
mod demo;
mod ifaces;
mod import;
mod participant;
mod peer;
mod rendezvous;
mod stun;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Why a command failed: bad arguments exit with 2, anything else with 1.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The arguments are wrong (exit 2).
    Usage(String),
    /// The command ran and failed (exit 1).
    Run(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Run(e.to_string())
    }
}

/// weft: message-oriented networking between peers.
#[derive(Parser, Debug)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show each layer at work on this machine (loopback only).
    Demo,
    /// List network interfaces, their addresses and the default route.
    Ifaces(ifaces::IfacesArgs),
    /// Ask STUN servers for this host's public address; --nat also
    /// discovers the NAT's behaviour (RFC 5780).
    Stun(stun::StunArgs),
    /// Serve STUN (RFC 8489; RFC 5780 with --alt) until interrupted.
    StunServer(stun::StunServerArgs),
    /// A messaging peer: stdin takes `IDENT<TAB>TEXT` lines to send, stdout gives JSON events.
    Peer(peer::PeerArgs),
    /// A rendezvous for peers behind NATs: registrations, STUN and a
    /// bounded relay (JSON events on stdout).
    Rendezvous(rendezvous::RendezvousArgs),
    /// A participant: finds the others on the network and carries
    /// publications for `weft pub` and `weft sub` (JSON events on stdout).
    Participant(participant::ParticipantArgs),
    /// Publish each stdin line on TOPIC.
    Pub(participant::PubArgs),
    /// Print each message on topics starting with TOPIC as a JSON line.
    Sub(participant::SubArgs),
    /// Make a certificate authority (`cert ca DIR`) and certificates for
    /// identities signed by it (`cert issue DIR NAME`).
    Cert(cert::CertArgs),
    /// Copy a snakeMQ 1.6 SQLite queue store's messages into a weft store
    /// (`weft peer --store`), leaving the snakeMQ file unchanged.
    ImportSnakemq(import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let first = e.to_string();
            let line = first.lines().next().unwrap_or("bad arguments");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo => demo::run().await.map_err(Failure::from),
            Command::Ifaces(args) => ifaces::run_ifaces(args).map_err(Failure::Run),
            Command::Stun(args) => stun::run_stun(args).await,
            Command::StunServer(args) => stun::run_stun_server(args).await,
            Command::Peer(args) => peer::run(args).await,
            Command::Rendezvous(args) => rendezvous::run(args).await,
            Command::Participant(args) => participant::run_participant(args).await,
            Command::Pub(args) => participant::run_pub(args).await,
            Command::Sub(args) => participant::run_sub(args).await,
            Command::Cert(args) => cert::run(args),
            Command::ImportSnakemq(args) => import::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("weft: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("weft: {e}");
            ExitCode::FAILURE
        }
    }
}
