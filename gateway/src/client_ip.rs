//! Who the client is, for the per-address rate-limit budgets.
//!
//! The peer address of the connection, unless that peer is one of `http.trusted_proxies`
//! (CIDRs): then the address the proxies forwarded, in the one header they write
//! (`http.forwarded_header`: `X-Forwarded-For` by default, or `Forwarded`, RFC 7239). Only that
//! header is read: proxies append to their own header and pass the other through as the client
//! sent it, so reading both would let a client name itself. The chain is read from the nearest
//! hop backwards, and the first address that is not a trusted proxy is the client: whatever a
//! client wrote itself sits left of what our proxies appended. Headers from an untrusted peer
//! are ignored altogether.
//!
//! An IPv6 client is keyed by its /64 (one subscriber's network: a host picks any address in
//! it at will), an IPv4-mapped IPv6 address by its IPv4 address.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Forwarded hops read at most (a longer chain is cut at the nearest hops).
const HOPS_MAX: usize = 16;

/// The header trusted proxies write the client's address in (`http.forwarded_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, most load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The trusted proxies of `http.trusted_proxies`, and the header they write.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `::1/128`) or single addresses (`192.0.2.7`).
    pub fn parse(list: &[String], header: ForwardedHeader) -> Result<Self, String> {
        let nets = list
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "http.trusted_proxies: {entry:?} is not a CIDR such as \"10.0.0.0/8\""
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets, header })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let chain = match self.header {
            ForwardedHeader::Forwarded => forwarded_chain(headers),
            ForwardedHeader::XForwardedFor => x_forwarded_for_chain(headers),
        };
        let mut client = peer;
        for hop in chain.into_iter().rev().take(HOPS_MAX) {
            let Some(ip) = hop else {
                // Unreadable (`unknown`, an obfuscated name): the last trusted hop is the
                // nearest we know.
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The rate-limit key of a client address: 4 bytes for IPv4, the /64 prefix for IPv6.
pub fn key(ip: IpAddr) -> Vec<u8> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `Forwarded`'s `for=` addresses, farthest first (`None` for a hop that is not an address).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then_some(value)
                })
                .and_then(forwarded_for)
        })
        .collect()
}

/// `X-Forwarded-For`'s addresses, farthest first (`None` for a hop that is not an address).
fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect()
}

/// A `for=` value: `192.0.2.60`, `"192.0.2.60:47011"`, `"[2001:db8::17]:4711"`.
fn forwarded_for(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let host = match value.rsplit_once(':') {
        // IPv4 with a port; a bare IPv6 address is not allowed unquoted, but accept it.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => value,
    };
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        proxies_writing(list, ForwardedHeader::XForwardedFor)
    }

    fn proxies_writing(list: &[&str], header: ForwardedHeader) -> TrustedProxies {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        TrustedProxies::parse(&list, header).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let spoof = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(none.client(ip("198.51.100.1"), &spoof), ip("198.51.100.1"));
        let lb = proxies(&["10.0.0.0/8", "::1"]);
        assert_eq!(
            lb.client(ip("198.51.100.1"), &spoof),
            ip("198.51.100.1"),
            "untrusted peer"
        );
        assert_eq!(lb.client(ip("10.1.2.3"), &spoof), ip("203.0.113.9"));
        assert_eq!(lb.client(ip("::1"), &spoof), ip("203.0.113.9"));
        assert_eq!(
            lb.client(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3"),
            "no header"
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_nearest_is_the_client() {
        let lb = proxies(&["10.0.0.0/8"]);
        // The client wrote a fake address first; our two proxies appended what they saw.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.7")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &chain), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let lines = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.7"),
        ]);
        assert_eq!(lb.client(ip("10.0.0.8"), &lines), ip("203.0.113.9"));
        // Garbage at the nearest hop: the last trusted address.
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &garbage), ip("10.0.0.8"));
        // Every hop trusted: the farthest one.
        let inside = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.7")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &inside), ip("10.9.9.9"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let both = headers(&[
            (
                "forwarded",
                "for=1.2.3.4, for=\"[2001:db8:cafe::17]:4711\";proto=https",
            ),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        // A proxy writing X-Forwarded-For passes a client's own Forwarded through: ignored.
        let xff = proxies(&["10.0.0.0/8"]);
        assert_eq!(xff.client(ip("10.0.0.8"), &both), ip("198.51.100.2"));
        let spoof = headers(&[("forwarded", "for=1.2.3.4")]);
        assert_eq!(xff.client(ip("10.0.0.8"), &spoof), ip("10.0.0.8"));
        let lb = proxies_writing(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(lb.client(ip("10.0.0.8"), &both), ip("2001:db8:cafe::17"));
        let port = headers(&[("forwarded", "for=\"192.0.2.60:47011\";by=10.0.0.8")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &port), ip("192.0.2.60"));
        let hidden = headers(&[("forwarded", "for=192.0.2.60, for=_hidden")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &hidden), ip("10.0.0.8"));
        let case = headers(&[("forwarded", "For=192.0.2.61")]);
        assert_eq!(lb.client(ip("10.0.0.8"), &case), ip("192.0.2.61"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            key(ip("2001:db8:1:2:aaaa::1")),
            key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_eq!(key(ip("::ffff:192.0.2.1")), key(ip("192.0.2.1")));
        assert_eq!(key(ip("192.0.2.1")), vec![192, 0, 2, 1]);
        assert!(proxies(&["192.0.2.0/24"]).trusts(ip("::ffff:192.0.2.5")));
        assert!(TrustedProxies::parse(&["nope".to_owned()], ForwardedHeader::Forwarded).is_err());
    }
}
