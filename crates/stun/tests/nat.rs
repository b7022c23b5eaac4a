//! RFC 5780 on loopback: a server on 127.0.0.1 and 127.0.0.2 (both are
//! loopback on Linux), its four sockets, CHANGE-REQUEST, RESPONSE-PORT and
//! NAT behaviour discovery, which finds no NAT here.

mod common;

use common::{addr, bounded, quick_client, server};
use tokio::net::UdpSocket;
use weft_stun::attribute::ChangeRequest;
use weft_stun::client::BindingOptions;
use weft_stun::integrity::Trailer;
use weft_stun::nat::{FilteringBehaviour, MappingBehaviour};
use weft_stun::{
    Attribute, ClientConfig, NatType, StunClient, StunError, StunMessage, StunMessageView,
    discover_nat,
};

#[tokio::test]
async fn rfc5780_server_listens_on_four_sockets() {
    let server = server("127.0.0.1:0", Some("127.0.0.2:0")).await;
    let p1 = server.primary().port();
    let p2 = server.alternate().unwrap().port();
    assert_eq!(p2, p1 + 1);
    assert_eq!(
        server.udp_addrs(),
        vec![
            addr(&format!("127.0.0.1:{p1}")),
            addr(&format!("127.0.0.1:{p2}")),
            addr(&format!("127.0.0.2:{p1}")),
            addr(&format!("127.0.0.2:{p2}")),
        ]
    );
    // Each socket answers, with OTHER-ADDRESS opposite to itself and
    // RESPONSE-ORIGIN equal to itself.
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let all = server.udp_addrs();
    for (i, target) in all.iter().enumerate() {
        let b = bounded(client.binding(*target)).await.unwrap();
        assert_eq!(b.mapped, client.local_addr());
        assert_eq!(b.response_origin, Some(*target));
        assert_eq!(b.other_address, Some(all[3 - i]));
    }
}

#[tokio::test]
async fn change_request_is_answered_from_the_named_socket() {
    let server = server("127.0.0.1:0", Some("127.0.0.2:0")).await;
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let primary = server.primary();
    let alternate = server.alternate().unwrap();
    let cases = [
        (false, false, primary),
        (true, true, alternate),
        (
            false,
            true,
            addr(&format!("127.0.0.1:{}", alternate.port())),
        ),
        (true, false, addr(&format!("127.0.0.2:{}", primary.port()))),
    ];
    for (change_ip, change_port, from) in cases {
        let options = BindingOptions {
            change_request: Some(ChangeRequest {
                change_ip,
                change_port,
            }),
            expect_from: Some(from),
            ..BindingOptions::default()
        };
        let b = bounded(client.binding_with(primary, options))
            .await
            .unwrap();
        assert_eq!(b.response_origin, Some(from));
        assert_eq!(b.mapped, client.local_addr());
    }
    // Expecting the answer from the wrong place: it arrives, is ignored
    // and counted, and the transaction times out.
    let quick = StunClient::bind(addr("127.0.0.1:0"), &quick_client())
        .await
        .unwrap();
    let options = BindingOptions {
        change_request: Some(ChangeRequest {
            change_ip: true,
            change_port: true,
        }),
        expect_from: Some(primary),
        ..BindingOptions::default()
    };
    let err = bounded(quick.binding_with(primary, options))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(quick.stats().ignored_unexpected_source, 3);
}

#[tokio::test]
async fn response_port_sends_the_answer_elsewhere() {
    let server = server("127.0.0.1:0", Some("127.0.0.2:0")).await;
    let asking = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hearing = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = StunMessage::binding_request()
        .with(Attribute::ResponsePort(
            hearing.local_addr().unwrap().port(),
        ))
        .encode_with(&Trailer::fingerprint())
        .unwrap();
    asking.send_to(&request, server.primary()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = bounded(hearing.recv_from(&mut buf)).await.unwrap();
    assert_eq!(from, server.primary());
    let view = StunMessageView::new_checked(&buf[..n]).unwrap();
    assert!(view.verify_fingerprint().unwrap());
    let response = view.to_message().unwrap();
    // The mapped address is where the request came from.
    assert_eq!(
        response.mapped_address(),
        Some(asking.local_addr().unwrap())
    );
}

#[tokio::test]
async fn discovery_on_loopback_finds_no_nat() {
    let server = server("127.0.0.1:0", Some("127.0.0.2:0")).await;
    let config = ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        ..quick_client()
    };
    let report = bounded(discover_nat(server.primary(), &config))
        .await
        .unwrap();
    assert_eq!(report.mapping, Some(MappingBehaviour::EndpointIndependent));
    assert_eq!(
        report.filtering,
        Some(FilteringBehaviour::EndpointIndependent)
    );
    assert_eq!(report.nat_type, Some(NatType::Open));
    assert_eq!(report.mapped, Some(report.local));
    assert!(report.is_open());
    assert_eq!(report.other_address, server.alternate());
    assert_eq!(report.server, server.primary());

    // From the unspecified address too: the routed source IP is used.
    let report = bounded(discover_nat(server.primary(), &quick_client()))
        .await
        .unwrap();
    assert_eq!(report.nat_type, Some(NatType::Open));
    assert_eq!(report.local.ip(), addr("127.0.0.1:0").ip());
}

#[tokio::test]
async fn discovery_needs_an_rfc5780_server() {
    let server = server("127.0.0.1:0", None).await;
    let err = bounded(discover_nat(server.primary(), &quick_client()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StunError::Rfc5780Unsupported { server: s } if s == server.primary()),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_answer_at_all_is_blocked() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let report = bounded(discover_nat(silent.local_addr().unwrap(), &quick_client()))
        .await
        .unwrap();
    assert_eq!(report.nat_type, Some(NatType::Blocked));
    assert_eq!(report.mapping, None);
    assert_eq!(report.filtering, None);
    assert_eq!(report.mapped, None);
}

/// How the simulated NAT behaves.
#[derive(Clone, Copy, Debug)]
struct Simulated {
    mapping: MappingBehaviour,
    filtering: FilteringBehaviour,
}

/// An RFC 5780 server on 127.0.0.1 and 127.0.0.2 that plays a NAT in
/// front of the client: the mapped address it reports depends on the
/// endpoint contacted as the mapping behaviour says (a public address in
/// 198.51.100.0/24, never sent to), and it drops the CHANGE-REQUEST answers
/// the filtering behaviour would block.
async fn simulated_nat(nat: Simulated) -> (std::net::SocketAddr, Vec<tokio::task::JoinHandle<()>>) {
    use std::sync::Arc;
    use weft_stun::responder::Endpoint;
    use weft_stun::{Class, StunMethod};
    let sockets = loop {
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let p1 = first.local_addr().unwrap().port();
        let Some(p2) = p1.checked_add(1) else {
            continue;
        };
        let rest = [
            format!("127.0.0.1:{p2}"),
            format!("127.0.0.2:{p1}"),
            format!("127.0.0.2:{p2}"),
        ];
        let mut bound = vec![first];
        for a in &rest {
            match UdpSocket::bind(a.as_str()).await {
                Ok(s) => bound.push(s),
                Err(_) => break,
            }
        }
        if bound.len() == 4 {
            break Arc::new(bound);
        }
    };
    let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut tasks = Vec::new();
    for endpoint in Endpoint::ALL {
        let sockets = sockets.clone();
        let addrs = addrs.clone();
        tasks.push(tokio::spawn(async move {
            let socket = &sockets[endpoint.index()];
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = StunMessage::decode(&buf[..n]) else {
                    continue;
                };
                let change = request.change_request().unwrap_or_default();
                let blocked = match nat.filtering {
                    FilteringBehaviour::EndpointIndependent => false,
                    FilteringBehaviour::AddressDependent => change.change_ip,
                    FilteringBehaviour::AddressAndPortDependent => {
                        change.change_ip || change.change_port
                    }
                };
                if blocked {
                    continue;
                }
                let port = 5000
                    + match nat.mapping {
                        MappingBehaviour::EndpointIndependent => 0,
                        MappingBehaviour::AddressDependent => u16::from(endpoint.alternate_ip),
                        MappingBehaviour::AddressAndPortDependent => endpoint.index() as u16,
                    };
                let from_endpoint = endpoint.changed(change);
                let other = endpoint.changed(ChangeRequest {
                    change_ip: true,
                    change_port: true,
                });
                let response = StunMessage::new(
                    Class::SuccessResponse,
                    StunMethod::BINDING,
                    request.transaction_id,
                )
                .with(Attribute::XorMappedAddress(addr(&format!(
                    "198.51.100.1:{port}"
                ))))
                .with(Attribute::ResponseOrigin(addrs[from_endpoint.index()]))
                .with(Attribute::OtherAddress(addrs[other.index()]))
                .encode()
                .unwrap();
                let _ = sockets[from_endpoint.index()]
                    .send_to(&response, from)
                    .await;
            }
        }));
    }
    (addrs[0], tasks)
}

#[tokio::test]
async fn discovery_through_a_simulated_nat() {
    use FilteringBehaviour as F;
    use MappingBehaviour as M;
    let cases = [
        (
            M::EndpointIndependent,
            F::EndpointIndependent,
            NatType::FullCone,
        ),
        (
            M::EndpointIndependent,
            F::AddressDependent,
            NatType::Restricted,
        ),
        (
            M::EndpointIndependent,
            F::AddressAndPortDependent,
            NatType::PortRestricted,
        ),
        (
            M::AddressDependent,
            F::AddressAndPortDependent,
            NatType::Symmetric,
        ),
        (
            M::AddressAndPortDependent,
            F::EndpointIndependent,
            NatType::Symmetric,
        ),
    ];
    for (mapping, filtering, nat_type) in cases {
        let (server, tasks) = simulated_nat(Simulated { mapping, filtering }).await;
        let config = ClientConfig {
            local: Some(addr("127.0.0.1:0")),
            ..quick_client()
        };
        let report = bounded(discover_nat(server, &config)).await.unwrap();
        assert_eq!(report.mapping, Some(mapping), "{report:?}");
        assert_eq!(report.filtering, Some(filtering), "{report:?}");
        assert_eq!(report.nat_type, Some(nat_type), "{report:?}");
        assert!(!report.is_open());
        for t in tasks {
            t.abort();
        }
    }
}
