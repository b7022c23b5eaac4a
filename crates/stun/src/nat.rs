//! NAT behaviour discovery (RFC 5780) and the classic RFC 3489 types.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::attribute::ChangeRequest;
use crate::client::BindingOptions;
use crate::transaction::canonical;
use crate::{ClientConfig, StunClient, StunError};

/// How a NAT maps a local address to public ones (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingBehaviour {
    /// The same mapping for every destination (or no NAT).
    EndpointIndependent,
    /// A mapping per destination IP.
    AddressDependent,
    /// A mapping per destination IP and port.
    AddressAndPortDependent,
}

/// Which inbound packets a NAT lets through to a mapping (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilteringBehaviour {
    /// From anywhere.
    EndpointIndependent,
    /// Only from IPs the mapping has sent to.
    AddressDependent,
    /// Only from IP and port pairs the mapping has sent to.
    AddressAndPortDependent,
}

/// The classic RFC 3489 NAT type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatType {
    /// No NAT: the mapped address is the local one.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address- or address-and-port-dependent mapping.
    Symmetric,
    /// No answer at all over UDP.
    Blocked,
}

impl MappingBehaviour {
    /// `endpoint-independent`, `address-dependent` or
    /// `address-and-port-dependent`.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingBehaviour::EndpointIndependent => "endpoint-independent",
            MappingBehaviour::AddressDependent => "address-dependent",
            MappingBehaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl FilteringBehaviour {
    /// `endpoint-independent`, `address-dependent` or
    /// `address-and-port-dependent`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilteringBehaviour::EndpointIndependent => "endpoint-independent",
            FilteringBehaviour::AddressDependent => "address-dependent",
            FilteringBehaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl NatType {
    /// `open`, `full-cone`, `restricted`, `port-restricted`, `symmetric` or
    /// `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            NatType::Open => "open",
            NatType::FullCone => "full-cone",
            NatType::Restricted => "restricted",
            NatType::PortRestricted => "port-restricted",
            NatType::Symmetric => "symmetric",
            NatType::Blocked => "blocked",
        }
    }

    /// The classic type from the behaviours. `open` is whether the mapped
    /// address equals the local one, which wins over everything else.
    /// `None` when a needed behaviour is unknown.
    pub fn classify(
        open: bool,
        mapping: Option<MappingBehaviour>,
        filtering: Option<FilteringBehaviour>,
    ) -> Option<NatType> {
        if open {
            return Some(NatType::Open);
        }
        match (mapping?, filtering) {
            (MappingBehaviour::EndpointIndependent, Some(f)) => Some(match f {
                FilteringBehaviour::EndpointIndependent => NatType::FullCone,
                FilteringBehaviour::AddressDependent => NatType::Restricted,
                FilteringBehaviour::AddressAndPortDependent => NatType::PortRestricted,
            }),
            (MappingBehaviour::EndpointIndependent, None) => None,
            _ => Some(NatType::Symmetric),
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(MappingBehaviour, FilteringBehaviour, NatType);

/// Mapping behaviour from the mapping tests' results (RFC 5780 §4.3):
/// the local address, M1, and M2 and M3 when those tests were answered
/// (M3 is only needed when M2 differs from M1).
pub fn classify_mapping(
    local: SocketAddr,
    m1: SocketAddr,
    m2: Option<SocketAddr>,
    m3: Option<SocketAddr>,
) -> Option<MappingBehaviour> {
    let (local, m1) = (canonical(local), canonical(m1));
    if m1 == local {
        return Some(MappingBehaviour::EndpointIndependent);
    }
    let m2 = canonical(m2?);
    if m2 == m1 {
        return Some(MappingBehaviour::EndpointIndependent);
    }
    let m3 = canonical(m3?);
    Some(if m3 == m2 {
        MappingBehaviour::AddressDependent
    } else {
        MappingBehaviour::AddressAndPortDependent
    })
}

/// Filtering behaviour from whether filtering tests II and III were
/// answered (RFC 5780 §4.4).
pub fn classify_filtering(test2_answered: bool, test3_answered: bool) -> FilteringBehaviour {
    if test2_answered {
        FilteringBehaviour::EndpointIndependent
    } else if test3_answered {
        FilteringBehaviour::AddressDependent
    } else {
        FilteringBehaviour::AddressAndPortDependent
    }
}

/// What NAT discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatReport {
    /// The server's primary address.
    pub server: SocketAddr,
    /// The local address of the mapping tests' socket.
    pub local: SocketAddr,
    /// The mapped address of mapping test I; `None` when blocked.
    pub mapped: Option<SocketAddr>,
    /// The server's OTHER-ADDRESS.
    pub other_address: Option<SocketAddr>,
    /// The mapping behaviour; `None` when blocked, or when the alternate
    /// address did not answer.
    pub mapping: Option<MappingBehaviour>,
    /// The filtering behaviour; `None` when blocked.
    pub filtering: Option<FilteringBehaviour>,
    /// The classic type; `None` when a needed behaviour is unknown.
    pub nat_type: Option<NatType>,
}

impl NatReport {
    /// Whether the mapped address is the local one (no NAT).
    pub fn is_open(&self) -> bool {
        self.mapped.map(canonical) == Some(canonical(self.local))
    }
}

/// How many of [`discover_nat`]'s transactions can time out one after the
/// other: a mapping test (II or III), then the filtering tests (test I, or
/// tests II and III, which run at the same time). Behind a filtering NAT
/// one of them times out.
const SEQUENTIAL_TIMEOUTS: u32 = 2;

impl ClientConfig {
    /// This configuration with its UDP retransmission cut so that
    /// [`discover_nat`] gives up within `total`, plus the round trips of
    /// the requests that were answered: each transaction gets an equal
    /// share for the most that can time out one after the other (two), cut
    /// as [`ClientConfig::within`] cuts a schedule.
    pub fn nat_discovery_within(&self, total: Duration) -> ClientConfig {
        ClientConfig {
            retransmit: crate::client::fit_retransmit(self.retransmit, total / SEQUENTIAL_TIMEOUTS),
            ..self.clone()
        }
    }
}

/// A timeout becomes `None`; other errors stay errors.
fn answered<T>(r: Result<T, StunError>) -> Result<Option<T>, StunError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StunError::Timeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs RFC 5780's mapping and filtering tests against `server` (its
/// primary address, over UDP), from [`ClientConfig::local_for`] and the
/// configured interface, each request with the configured retransmission.
///
/// No answer to the first request gives [`NatType::Blocked`]; a server
/// without OTHER-ADDRESS gives [`StunError::Rfc5780Unsupported`].
/// Cancel-safe: dropping the future abandons the tests.
///
/// The filtering tests run from a fresh socket on the same local IP with a
/// port chosen by the system.
///
/// The tests (RFC 5780 §4.3 and §4.4). Mapping, on one socket:
/// - test I: a Binding request to the primary address gives the mapped
///   address M1 and the server's OTHER-ADDRESS. M1 equal to the local
///   address means no NAT (endpoint-independent mapping).
/// - test II: to the alternate IP and primary port, giving M2. M2 = M1 is
///   endpoint-independent mapping.
/// - test III: to the alternate IP and port, giving M3. M3 = M2 is
///   address-dependent, else address-and-port-dependent mapping.
///
/// Filtering, on a fresh socket (so that the mapping tests opened no
/// filter):
/// - test I: a Binding request to the primary address.
/// - test II: CHANGE-REQUEST "change IP and port". An answer from the
///   alternate address means endpoint-independent filtering.
/// - test III: CHANGE-REQUEST "change port". An answer from the primary IP
///   and alternate port means address-dependent filtering; none means
///   address-and-port-dependent.
///
/// Tests II and III of filtering run at the same time (they reach only the
/// primary address, and their answers come from different addresses), so
/// a filtering NAT costs one retransmission period rather than two.
pub async fn discover_nat(
    server: SocketAddr,
    config: &ClientConfig,
) -> Result<NatReport, StunError> {
    let local = config.local_for(server);
    let mapping_client = StunClient::bind(local, config).await?;
    let local = mapping_client.local_towards(server);
    let blocked = NatReport {
        server,
        local,
        mapped: None,
        other_address: None,
        mapping: None,
        filtering: None,
        nat_type: Some(NatType::Blocked),
    };
    // Mapping test I.
    let Some(t1) = answered(mapping_client.binding(server).await)? else {
        return Ok(blocked);
    };
    let local = t1.local;
    let other = t1
        .other_address
        .ok_or(StunError::Rfc5780Unsupported { server })?;
    let m1 = t1.mapped;
    // Mapping test II, always run: it also shows the alternate IP answers.
    let alt_ip_primary_port = SocketAddr::new(other.ip(), server.port());
    let m2 = answered(mapping_client.binding(alt_ip_primary_port).await)?.map(|b| b.mapped);
    let m3 = match m2 {
        Some(m2) if canonical(m2) != canonical(m1) && canonical(m1) != canonical(local) => {
            answered(mapping_client.binding(other).await)?.map(|b| b.mapped)
        }
        _ => None,
    };
    let mapping = classify_mapping(local, m1, m2, m3);
    drop(mapping_client);

    // Filtering, on a fresh socket.
    let fresh = SocketAddr::new(config.local_for(server).ip(), 0);
    let filtering_client = StunClient::bind(fresh, config).await?;
    let filtering = match answered(filtering_client.binding(server).await)? {
        None => None,
        Some(_) => {
            let change_both = BindingOptions {
                change_request: Some(ChangeRequest {
                    change_ip: true,
                    change_port: true,
                }),
                expect_from: Some(other),
                ..BindingOptions::default()
            };
            let change_port = BindingOptions {
                change_request: Some(ChangeRequest {
                    change_ip: false,
                    change_port: true,
                }),
                expect_from: Some(SocketAddr::new(server.ip(), other.port())),
                ..BindingOptions::default()
            };
            let (t2, t3) = tokio::join!(
                filtering_client.binding_with(server, change_both),
                filtering_client.binding_with(server, change_port),
            );
            let (t2, t3) = (answered(t2)?, answered(t3)?);
            Some(classify_filtering(t2.is_some(), t3.is_some()))
        }
    };
    let open = canonical(m1) == canonical(local);
    Ok(NatReport {
        server,
        local,
        mapped: Some(m1),
        other_address: Some(other),
        mapping,
        filtering,
        nat_type: NatType::classify(open, mapping, filtering),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapping_from_test_results() {
        let local = a("10.0.0.2:5000");
        use MappingBehaviour::*;
        assert_eq!(
            classify_mapping(local, local, None, None),
            Some(EndpointIndependent)
        );
        let m1 = a("203.0.113.1:6000");
        assert_eq!(
            classify_mapping(local, m1, Some(m1), None),
            Some(EndpointIndependent)
        );
        let m2 = a("203.0.113.1:6001");
        assert_eq!(
            classify_mapping(local, m1, Some(m2), Some(m2)),
            Some(AddressDependent)
        );
        assert_eq!(
            classify_mapping(local, m1, Some(m2), Some(a("203.0.113.1:6002"))),
            Some(AddressAndPortDependent)
        );
        assert_eq!(classify_mapping(local, m1, None, None), None);
        assert_eq!(classify_mapping(local, m1, Some(m2), None), None);
    }

    #[test]
    fn discovery_cut_to_ten_seconds() {
        let config = ClientConfig::default().nat_discovery_within(Duration::from_secs(10));
        let each = config.retransmit.total_timeout();
        assert_eq!(each, Duration::from_secs(5));
        assert!(each * SEQUENTIAL_TIMEOUTS <= Duration::from_secs(10));
        let roomy = ClientConfig::default().nat_discovery_within(Duration::from_secs(80));
        assert_eq!(roomy.retransmit, ClientConfig::default().retransmit);
    }

    #[test]
    fn filtering_and_classic_types() {
        use FilteringBehaviour as F;
        use MappingBehaviour as M;
        assert_eq!(classify_filtering(true, false), F::EndpointIndependent);
        assert_eq!(classify_filtering(false, true), F::AddressDependent);
        assert_eq!(classify_filtering(false, false), F::AddressAndPortDependent);
        let eim = Some(M::EndpointIndependent);
        assert_eq!(
            NatType::classify(true, eim, Some(F::AddressAndPortDependent)),
            Some(NatType::Open)
        );
        assert_eq!(
            NatType::classify(false, eim, Some(F::EndpointIndependent)),
            Some(NatType::FullCone)
        );
        assert_eq!(
            NatType::classify(false, eim, Some(F::AddressDependent)),
            Some(NatType::Restricted)
        );
        assert_eq!(
            NatType::classify(false, eim, Some(F::AddressAndPortDependent)),
            Some(NatType::PortRestricted)
        );
        assert_eq!(
            NatType::classify(
                false,
                Some(M::AddressDependent),
                Some(F::EndpointIndependent)
            ),
            Some(NatType::Symmetric)
        );
        assert_eq!(
            NatType::classify(false, Some(M::AddressAndPortDependent), None),
            Some(NatType::Symmetric)
        );
        assert_eq!(NatType::classify(false, None, None), None);
        assert_eq!(NatType::PortRestricted.to_string(), "port-restricted");
        assert_eq!(
            M::AddressAndPortDependent.to_string(),
            "address-and-port-dependent"
        );
    }
}
