//! SSRF defence. A webhook URL must be https and resolve only to public
//! addresses, checked at registration and again at delivery, where the
//! HTTP client's resolver (below) refuses private answers: the address it
//! hands to the connector is the address that was vetted, so a DNS answer
//! that changes between check and connect (rebinding) gains nothing.
//! `webhooks.allow_private_targets` lifts both rules (tests, private clouds).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, including the 169.254.169.254 metadata service
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, including fd00:ec2::254
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to an address we cannot vet
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (RFC 8215)
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0])) // discard-only
        }
    }
}

/// IPv4 hidden in IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
/// translated (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4
/// (2002:AABB:CCDD::/48 routes to a.b.c.d).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let tail = v4(s[6], s[7]);
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || (s[5] == 0 && (s[6] != 0 || s[7] > 1))) {
        return Some(tail);
    }
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some(tail);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(v4(s[1], s[2]));
    }
    None
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlRefused {
    #[error("not a valid absolute URL")]
    Malformed,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry credentials")]
    Credentials,
    #[error("resolves to a non-public address ({0})")]
    Private(IpAddr),
    #[error("host does not resolve")]
    Unresolvable,
}

/// Checks a URL at registration: scheme, and every address its host resolves to.
pub async fn vet(raw: &str, allow_private: bool) -> Result<Url, UrlRefused> {
    let url = Url::parse(raw).map_err(|_| UrlRefused::Malformed)?;
    let host = url.host_str().ok_or(UrlRefused::Malformed)?.to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefused::NotHttps),
    }
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port)).await.map_err(|_| UrlRefused::Unresolvable)?.collect(),
    };
    if addrs.is_empty() {
        return Err(UrlRefused::Unresolvable);
    }
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(UrlRefused::Private(bad.ip()));
    }
    Ok(url)
}

/// The delivery client's resolver: answers only with public addresses.
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(std::io::Error::other(format!("{host} resolves to non-public {}", bad.ip())))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            if addrs.is_empty() {
                return Err(Box::new(std::io::Error::other(format!("{host} does not resolve"))) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// At delivery, an IP literal never reaches the resolver: check it here.
pub fn literal_host_allowed(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_public_v4(ip),
        Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_address_class() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "64:ff9b:1::a00:1",
            "2002:0a00:0001::1",
            "2002:a9fe:a9fe::",
            "::ffff:0:127.0.0.1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[actix_web::test]
    async fn refuses_private_and_non_https_urls() {
        assert_eq!(vet("http://example.com/h", false).await, Err(UrlRefused::NotHttps));
        assert_eq!(vet("ftp://example.com/h", true).await, Err(UrlRefused::NotHttps));
        assert_eq!(vet("not a url", false).await, Err(UrlRefused::Malformed));
        assert!(matches!(vet("https://127.0.0.1/h", false).await, Err(UrlRefused::Private(_))));
        assert!(matches!(vet("https://[::ffff:169.254.169.254]/h", false).await, Err(UrlRefused::Private(_))));
        assert!(matches!(vet("https://localhost/h", false).await, Err(UrlRefused::Private(_))));
        assert_eq!(vet("https://user:pw@example.com/h", false).await, Err(UrlRefused::Credentials));
        assert!(vet("http://127.0.0.1:9/h", true).await.is_ok());
    }
}
