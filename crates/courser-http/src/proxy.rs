//! `proxy_ip_parser`: the client address behind trusted proxies
//! (`http.trusted_subnets`), from `Forwarded`, `X-Forwarded-For`, `X-Real-Ip`,
//! `True-Client-Ip` or `Cf-Connecting-Ip`.
//!
//! Unlike RoadRunner, which takes the leftmost `X-Forwarded-For` entry (which any
//! client can forge), Courser walks the list from the right and takes the first
//! address that is not itself a trusted proxy.

use http::HeaderMap;
use std::net::IpAddr;

/// One CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// Trusted proxy ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Net>,
}

impl TrustedProxies {
    /// Parses CIDR ranges; the error names the entry that is not one.
    pub fn new(list: &[String]) -> Result<TrustedProxies, String> {
        let nets = list
            .iter()
            .map(|s| {
                Net::parse(s).ok_or_else(|| {
                    format!("http.trusted_subnets: {s:?} is not an IP range such as \"10.0.0.0/8\"")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy that
    /// says who it forwards for.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        if let Some(ip) = self.via_forwarded(headers) {
            return ip;
        }
        if let Some(ip) = self.via_xff(headers) {
            return ip;
        }
        for name in ["x-real-ip", "true-client-ip", "cf-connecting-ip"] {
            if let Some(ip) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_ip)
            {
                return ip;
            }
        }
        peer
    }

    fn via_forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut hops: Vec<IpAddr> = Vec::new();
        for v in headers.get_all(http::header::FORWARDED) {
            let Ok(v) = v.to_str() else { continue };
            for element in v.split(',') {
                for pair in element.split(';') {
                    if let Some((k, val)) = pair.trim().split_once('=') {
                        if k.trim().eq_ignore_ascii_case("for") {
                            if let Some(ip) = parse_ip(val.trim().trim_matches('"')) {
                                hops.push(ip);
                            }
                        }
                    }
                }
            }
        }
        self.rightmost_untrusted(hops)
    }

    fn via_xff(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(parse_ip)
            .collect();
        self.rightmost_untrusted(hops)
    }

    fn rightmost_untrusted(&self, hops: Vec<IpAddr>) -> Option<IpAddr> {
        let first = *hops.first()?;
        Some(
            hops.iter()
                .rev()
                .copied()
                .find(|ip| !self.trusted(*ip))
                .unwrap_or(first),
        )
    }
}

/// An address from a header: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80` or `::1`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    s.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, headers: &[(&str, &str)], want: &str) {
        let t = TrustedProxies::new(&["10.0.0.0/8".into(), "127.0.0.1".into(), "::1/128".into()])
            .expect("nets");
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        assert_eq!(
            t.client_ip(peer.parse().expect("peer"), &h).to_string(),
            want,
            "{peer} {headers:?}"
        );
    }

    #[test]
    fn client_addresses() {
        check(
            "203.0.113.9",
            &[("x-forwarded-for", "1.1.1.1")],
            "203.0.113.9",
        );
        check("10.1.2.3", &[("x-forwarded-for", "1.1.1.1")], "1.1.1.1");
        check(
            "10.1.2.3",
            &[("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.9.9.9")],
            "1.1.1.1",
        );
        check(
            "10.1.2.3",
            &[(
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5",
            )],
            "2001:db8::1",
        );
        check("127.0.0.1", &[("x-real-ip", "2.2.2.2")], "2.2.2.2");
        check("127.0.0.1", &[("cf-connecting-ip", "3.3.3.3")], "3.3.3.3");
        check("::1", &[("true-client-ip", "4.4.4.4:80")], "4.4.4.4");
        check("10.1.2.3", &[("x-forwarded-for", "garbage")], "10.1.2.3");
        assert!(TrustedProxies::new(&["10.0.0.0/33".into()]).is_err());
    }
}
