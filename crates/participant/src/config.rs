//! Plain configuration with documented defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use weft_discovery::{BeaconTarget, DiscoveryConfig, GroupKey, ParticipantId};
use weft_messaging::MessagingConfig;
use weft_messaging::config::{DuplicateIdentity, QueuePolicy};

use crate::{StreamTls, StreamTransport};

/// How a [`Participant`](crate::Participant) behaves. Each field documents
/// its default; the defaults need no configuration at all.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ParticipantConfig {
    /// The identity others address us by (1 to 50 characters). Default:
    /// `weft-` and the first 8 hex digits of the participant id.
    pub identity: Option<String>,
    /// The participant id; keep one to be seen as the same participant,
    /// restarted, after a restart. Default: a new random id.
    pub id: Option<ParticipantId>,
    /// Where streams from other participants are accepted (a `tcp://`
    /// address; an unspecified IP is announced as such and stands for the
    /// address our beacons come from). With
    /// [`StreamTransport::Quic`] its host and port are listened on with
    /// `quic://`, whatever its scheme. Default: `tcp://0.0.0.0:0`.
    pub listen: String,
    /// How streams between participants travel: plain TCP, or QUIC with
    /// mutual TLS (which needs [`tls`](Self::tls)). Every participant of a
    /// group must use the same one: beacons announce only an address, and
    /// we dial the others with ours. Default: [`StreamTransport::Tcp`].
    pub transport: StreamTransport,
    /// The certificate, key and trusted CAs of our streams, for
    /// [`StreamTransport::Quic`]: we present the certificate on both
    /// sides of a stream and accept only certificates that chain to the
    /// CAs, so every stream is mutually authenticated; and, unless
    /// [`StreamTls::server_name`] names the group, each certificate must
    /// name its participant's identity (checked on both sides, see there).
    /// Not used with TCP. Default: none.
    pub tls: Option<StreamTls>,
    /// Discovery. Default: [`DiscoveryConfig::default`] (beacons on every
    /// suitable interface).
    pub discovery: DiscoveryConfig,
    /// Messaging underneath. Default: [`MessagingConfig::default`] with a
    /// restarted participant's stream replacing its old one
    /// ([`DuplicateIdentity::ReplaceOld`]), queues of at most 65 536
    /// messages per participant that drop their oldest when full
    /// ([`QueuePolicy::DropOldest`]: a publisher never blocks), and
    /// keep-alive every 5 s with 5 s to answer, so a stream to a
    /// participant that vanished without closing it ends within 10 s.
    ///
    /// Its limits on a peer's SUBSCRIBE filters also bound the subscriber
    /// filters each participant announces in control messages, so one set
    /// of knobs governs both: at most
    /// [`max_peer_filters`](MessagingConfig::max_peer_filters) (1 024) per
    /// participant, [`max_peer_regex_filters`](MessagingConfig::max_peer_regex_filters)
    /// (16) of them regexes, [`max_peer_filter_bytes`](MessagingConfig::max_peer_filter_bytes)
    /// (64 KiB) of text, each regex compiled within
    /// [`regex_size_limit`](MessagingConfig::regex_size_limit) and
    /// [`regex_dfa_size_limit`](MessagingConfig::regex_dfa_size_limit)
    /// (256 KiB each). Filters past them are refused, never compiled, and
    /// counted in [`ParticipantStats::filters_refused`](crate::ParticipantStats::filters_refused)
    /// and [`regexes_refused`](crate::ParticipantStats::regexes_refused).
    pub messaging: MessagingConfig,
    /// Hops a routed message may take (participants it passes through,
    /// plus one), and the farthest a subscriber's interest travels and a
    /// publication is routed to it. Default: 8.
    pub max_hops: u8,
    /// Events kept for each [`ParticipantEvents`](crate::ParticipantEvents)
    /// reader; a reader that falls further behind loses the oldest and is
    /// told how many. Default: 1024.
    pub event_capacity: usize,
    /// Direct messages waiting in [`recv_direct`](crate::Participant::recv_direct);
    /// further ones are dropped and counted. Default: 1024.
    pub direct_capacity: usize,
    /// How long a control message (lists of publishers and subscribers,
    /// routes) may wait for a stream before it is dropped. Default: 10 s.
    pub control_ttl: Duration,
    /// The group's shared secret. With one, beacons carry an HMAC-SHA256
    /// tag (it is also set as [`DiscoveryConfig::group_key`]) and every
    /// new stream must prove it holds the key (a challenge and an HMAC
    /// proof each way) before it is taken as a neighbour; beacons and
    /// streams that cannot are dropped and counted. It proves membership,
    /// it does not encrypt. Default: none.
    pub group_key: Option<GroupKey>,
    /// With a group key, how long a new stream has to prove it. Default:
    /// 5 s.
    pub handshake_timeout: Duration,
    /// How many publications routed through participants a subscriber's
    /// participant remembers by name, so that a second copy (possible
    /// while routes change) is not delivered again. Default: 4096.
    pub recent_publications: usize,
    /// Up to how many participants, ourselves included, the group keeps a
    /// full mesh (a stream between every pair, the lower id dialling);
    /// in a larger group each participant keeps at most
    /// [`max_streams`](Self::max_streams) streams, a bounded overlay that
    /// routes the rest (see `core/overlay.rs`). Default: 32.
    pub group_size: usize,
    /// In a group larger than [`group_size`](Self::group_size): at most how
    /// many streams (neighbours), inbound included, a participant keeps.
    /// It dials until it has half as many (at least 1), accepts streams
    /// up to this many, and asks a stream past it to leave. Default: 16.
    pub max_streams: usize,
    /// In a group larger than [`group_size`](Self::group_size): how long a
    /// stream we dial may take to come up before we give it up and dial
    /// someone else, and how long a stream we asked to leave may stay
    /// before we close it ourselves. Default: 10 s.
    pub dial_timeout: Duration,
}

/// The default of [`ParticipantConfig::recent_publications`].
const RECENT_PUBLICATIONS: usize = 4096;

/// How long a participant gathers changes of its routes and interest
/// before telling its neighbours (see `core/mod.rs`): short beside a
/// beacon interval, long beside the burst of changes a forming group
/// makes.
pub(crate) const ADVERTISE_BATCH: Duration = Duration::from_millis(20);

/// The default of [`ParticipantConfig::dial_timeout`].
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of [`ParticipantConfig::group_size`].
pub(crate) const GROUP_SIZE: usize = 32;

/// The default of [`ParticipantConfig::max_streams`].
pub(crate) const MAX_STREAMS: usize = 16;

impl Default for ParticipantConfig {
    fn default() -> ParticipantConfig {
        let mut messaging = MessagingConfig::default();
        messaging.duplicate_identity = DuplicateIdentity::ReplaceOld;
        messaging.queue_policy = QueuePolicy::DropOldest;
        messaging.max_queue_messages = 65_536;
        messaging.keepalive_interval = Some(Duration::from_secs(5));
        messaging.keepalive_wait = Duration::from_secs(5);
        ParticipantConfig {
            identity: None,
            id: None,
            listen: "tcp://0.0.0.0:0".into(),
            transport: StreamTransport::Tcp,
            tls: None,
            discovery: DiscoveryConfig::default(),
            messaging,
            max_hops: 8,
            event_capacity: 1024,
            direct_capacity: 1024,
            control_ttl: Duration::from_secs(10),
            group_key: None,
            handshake_timeout: Duration::from_secs(5),
            recent_publications: RECENT_PUBLICATIONS,
            group_size: GROUP_SIZE,
            max_streams: MAX_STREAMS,
            dial_timeout: DIAL_TIMEOUT,
        }
    }
}

impl ParticipantConfig {
    /// Participants of this host only: streams on `127.0.0.1`, beacons to
    /// `127.255.255.255` on `port` ([`DiscoveryConfig::loopback`]).
    /// Nothing leaves the host.
    pub fn loopback(port: u16) -> ParticipantConfig {
        ParticipantConfig {
            listen: "tcp://127.0.0.1:0".into(),
            discovery: DiscoveryConfig::loopback(port),
            ..ParticipantConfig::default()
        }
    }

    /// This configuration with the identity `identity`.
    pub fn with_identity(mut self, identity: impl Into<String>) -> ParticipantConfig {
        self.identity = Some(identity.into());
        self
    }

    /// This configuration beaconing from `127.0.0.1` to the beacon ports
    /// `ports` of this host only, each a participant's own
    /// ([`loopback`](Self::loopback) with a port of each one's): who hears
    /// whom is chosen, so one host can hold a line, a star or any other
    /// shape of participants.
    ///
    /// ```
    /// use weft_participant::ParticipantConfig;
    ///
    /// // m between a (beacon port 7001) and c (7003).
    /// let a = ParticipantConfig::loopback(7001).beaconing_to(&[7002]);
    /// let m = ParticipantConfig::loopback(7002).beaconing_to(&[7001, 7003]);
    /// let c = ParticipantConfig::loopback(7003).beaconing_to(&[7002]);
    /// assert_eq!(m.discovery.targets.len(), 2);
    /// ```
    pub fn beaconing_to(mut self, ports: &[u16]) -> ParticipantConfig {
        self.discovery.bind_v4 = Ipv4Addr::LOCALHOST;
        self.discovery.targets = ports
            .iter()
            .map(|p| BeaconTarget::Unicast(SocketAddr::from((Ipv4Addr::LOCALHOST, *p))))
            .collect();
        self
    }
}
