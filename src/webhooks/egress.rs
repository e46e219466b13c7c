//! Where `http` targets may be delivered: the guard against server-side request forgery.
//!
//! A target URL comes from an API caller; without a guard it could point at InfluxDB on
//! `127.0.0.1:8086`, the Supervisor, or any internal host, and the delivery log would tell which
//! ports are open. Refused (unless `webhooks.allow_internal_targets`):
//!
//! - loopback, unspecified (`0.0.0.0/8`, `::`), link-local (`169.254.0.0/16`, `fe80::/10`),
//!   multicast and broadcast addresses, also as IPv4-mapped / IPv4-compatible IPv6 (`::ffff:a.b.c.d`,
//!   `::a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`);
//! - the Supervisor's add-on network, `172.30.32.0/23` and `fd0c:ac1e:2100::/48`;
//! - the host names `supervisor`, `homeassistant`, `hassio` and `localhost` (also `*.localhost`).
//!
//! Other private ranges (`192.168.0.0/16`, `10.0.0.0/8`, `fd00::/8` outside the add-on network)
//! stay allowed: home receivers live there.
//!
//! The check runs when a target is created or replaced ([`check_url`], which also resolves the
//! name) and again at every delivery on the addresses actually connected to: the delivery client
//! resolves names through [`GuardedResolver`], which refuses a name if any of its addresses is
//! refused, and hyper connects only to the addresses the resolver returned, so a DNS answer that
//! changes between the check and the connection (rebinding) cannot slip through. IP literals are
//! never given to a resolver, so [`check_literal`] checks them before the request. The client
//! follows no redirects and uses no proxy from the environment, so neither can lead elsewhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Host names of the Supervisor's add-on network (and Home Assistant's own name).
pub(crate) const INTERNAL_HOSTS: [&str; 3] = ["supervisor", "homeassistant", "hassio"];

/// What a refused delivery or target says: the same for every refused host and port, so the
/// delivery log tells nothing about what listens there (no connection is ever attempted).
pub const REFUSED: &str = "refused: the target is an internal address (loopback, link-local, \
     multicast, the Supervisor's network or its host names); set webhooks.allow_internal_targets \
     to allow it";

/// How long the check at creation waits for DNS.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The error of a refused target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{REFUSED}")]
pub(crate) struct Refused;

/// Whether an IPv4 address is refused.
fn internal_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    ip.octets()[0] == 0 // 0.0.0.0/8: "this network", the unspecified address
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        // the Supervisor's add-on network 172.30.32.0/23
        || bits & 0xFFFF_FE00 == 0xAC1E_2000
}

/// Whether an IPv6 address is refused.
fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated; also :: and ::1) and NAT64 (64:ff9b::a.b.c.d)
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::from(u32::from(s[6]) << 16 | u32::from(s[7]));
        return internal_v4(v4) || ip.is_loopback() || ip.is_unspecified();
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_unicast_link_local()
        || ip.is_multicast()
        // the Supervisor's add-on network fd0c:ac1e:2100::/48
        || s[..3] == [0xfd0c, 0xac1e, 0x2100]
}

/// Whether deliveries to `ip` are refused (unless `webhooks.allow_internal_targets`).
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn normalized(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a host name is one of [`INTERNAL_HOSTS`] (compared without case and a trailing dot).
fn is_supervisor_name(name: &str) -> bool {
    INTERNAL_HOSTS.contains(&normalized(name).as_str())
}

/// Whether a host name is refused by name: [`INTERNAL_HOSTS`], `localhost` and `*.localhost`
/// (always loopback, RFC 6761), compared without case and a trailing dot.
pub(crate) fn is_internal_name(name: &str) -> bool {
    let name = normalized(name);
    is_supervisor_name(&name) || name == "localhost" || name.ends_with(".localhost")
}

/// Checks a URL's host without resolving it: refused names and IP literals.
pub(crate) fn check_literal(url: &url::Url) -> Result<(), Refused> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) if internal_v4(ip) => Err(Refused),
        Some(url::Host::Ipv6(ip)) if internal_v6(ip) => Err(Refused),
        Some(url::Host::Domain(name)) if is_internal_name(name) => Err(Refused),
        _ => Ok(()),
    }
}

/// Checks a target URL when it is created or replaced: the host as written and, for a name, the
/// addresses it resolves to now. A name that does not resolve (yet) is accepted: every delivery
/// checks again.
pub(crate) async fn check_url(url: &url::Url) -> Result<(), Refused> {
    check_literal(url)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let lookup = tokio::net::lookup_host((name, url.port_or_known_default().unwrap_or(80)));
        if let Ok(Ok(addrs)) = tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            check_addrs(addrs)?;
        }
    }
    Ok(())
}

/// Refuses the whole answer if any address is refused.
fn check_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
    if addrs.iter().any(|a| is_internal(a.ip())) {
        Err(Refused)
    } else {
        Ok(addrs)
    }
}

/// The delivery client's DNS resolver: the system's (`getaddrinfo`), then the check; the client
/// connects only to the addresses it returns.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // (`localhost` is refused by the addresses it resolves to)
            if is_supervisor_name(&name) {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addrs = check_addrs(addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `e` (or one of its causes) is a [`Refused`].
pub(crate) fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause.downcast_ref::<Refused>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether an `ha` target's webhook id is refused: one made only of dots is a path segment
/// (`..`, `.`) that would turn `/api/webhook/<id>` into another path of Core's API, reached with
/// the Supervisor's token.
pub(crate) fn is_dot_segment(webhook_id: &str) -> bool {
    webhook_id.bytes().all(|b| b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ipv4_classes() {
        for refused in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "172.30.32.1",
            "172.30.32.2",
            "172.30.33.255",
        ] {
            assert!(is_internal(ip(refused)), "{refused} must be refused");
        }
        for allowed in [
            "192.168.1.10",
            "10.0.0.5",
            "172.16.0.1",
            "172.30.31.255", // just below 172.30.32.0/23
            "172.30.34.0",   // just above
            "172.30.0.1",
            "100.64.0.1",
            "1.1.1.1",
            "93.184.216.34",
            "1.0.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "223.255.255.255",
        ] {
            assert!(!is_internal(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn ipv6_classes_and_embedded_ipv4() {
        for refused in [
            "::1",
            "::",
            "fe80::1",
            "febf:ffff::1",
            "ff02::1",
            "ff05::2",
            "fd0c:ac1e:2100::1",
            "fd0c:ac1e:2100:ffff:ffff:ffff:ffff:ffff",
            // IPv4-mapped
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:172.30.32.2",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            // IPv4-compatible (deprecated)
            "::127.0.0.1",
            "::172.30.33.1",
            // NAT64
            "64:ff9b::127.0.0.1",
            "64:ff9b::172.30.32.2",
        ] {
            assert!(is_internal(ip(refused)), "{refused} must be refused");
        }
        for allowed in [
            "fd00::1",
            "fd12:3456::1",
            "fd0c:ac1e:2101::1", // next /48 after the add-on network
            "fd0c:ac1e:20ff::1", // the one before
            "fc00::1",
            "fe7f::1",
            "fec0::1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:192.168.1.10",
            "::ffff:10.0.0.1",
            "::ffff:172.30.34.1",
            "64:ff9b::1.1.1.1",
            "::1.1.1.1",
        ] {
            assert!(!is_internal(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn the_addon_network_boundaries() {
        // 172.30.32.0/23 is 172.30.32.0 ..= 172.30.33.255
        let first = u32::from(Ipv4Addr::new(172, 30, 32, 0));
        for (offset, refused) in [(-1i64, false), (0, true), (511, true), (512, false)] {
            let v4 = Ipv4Addr::from(u32::try_from(i64::from(first) + offset).expect("u32"));
            assert_eq!(is_internal(IpAddr::V4(v4)), refused, "{v4}");
            assert_eq!(
                is_internal(IpAddr::V6(v4.to_ipv6_mapped())),
                refused,
                "::ffff:{v4}"
            );
        }
    }

    #[test]
    fn names_and_literals() {
        let url = |s: &str| url::Url::parse(s).expect("url");
        for refused in [
            "http://supervisor/core/api/states",
            "http://SUPERVISOR./x",
            "http://homeassistant:8123/api/",
            "http://hassio/addons",
            "http://localhost:8086/query",
            "http://a.localhost/",
            "http://127.0.0.1:8086/query?q=DROP%20DATABASE%20x",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.0.0.1/", // and in hex
            "http://[::1]:8086/",
            "http://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "http://172.30.32.1:8123/",
            "http://[fd0c:ac1e:2100::2]/",
            "http://0.0.0.0:8099/",
        ] {
            assert_eq!(check_literal(&url(refused)), Err(Refused), "{refused}");
        }
        for allowed in [
            "http://192.168.1.20:8080/hook",
            "http://10.0.0.2/hook",
            "http://[fd00::2]/hook",
            "https://example.com/hook",
            "http://supervisor.example.com/",
            "http://my-homeassistant.lan/",
        ] {
            assert_eq!(check_literal(&url(allowed)), Ok(()), "{allowed}");
        }
    }

    #[tokio::test]
    async fn resolution_is_checked() {
        let url = |s: &str| url::Url::parse(s).expect("url");
        // `localhost` resolves to loopback: refused both by name and by address
        assert_eq!(check_url(&url("http://localhost:1/")).await, Err(Refused));
        assert!(
            GuardedResolver
                .resolve("localhost".parse().expect("name"))
                .await
                .is_err()
        );
        // addresses are checked all together: one refused address refuses the name
        let addrs = ["192.168.1.2:80", "127.0.0.1:80"].map(|a| a.parse().expect("addr"));
        assert_eq!(check_addrs(addrs), Err(Refused));
        let addrs = ["192.168.1.2:80", "[fd00::1]:80"].map(|a| a.parse().expect("addr"));
        assert_eq!(check_addrs(addrs).map(|a| a.len()), Ok(2));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused);
        assert!(is_refused(&*boxed));
    }

    #[test]
    fn dot_only_webhook_ids() {
        for bad in [".", "..", "...", "...."] {
            assert!(is_dot_segment(bad), "{bad}");
        }
        for ok in ["a.", "..a", "homeiq-123", ".a."] {
            assert!(!is_dot_segment(ok), "{ok}");
        }
    }
}
