//! Reading upstream resolvers from a resolv.conf file.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The port every `nameserver` line of resolv.conf implies.
const DNS_PORT: u16 = 53;

/// The `nameserver` addresses of a resolv.conf file, on port 53, in file order. A missing or
/// unreadable file gives no upstreams (names outside the zone then answer SERVFAIL); lines
/// that do not parse are skipped, as the C library does. An IPv6 address with a zone
/// (`fe80::1%eth0`) is skipped too, since a socket address here carries no scope name.
pub fn upstreams_from_resolv_conf(path: impl AsRef<Path>) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path.as_ref()) {
        Ok(text) => parse(&text),
        Err(error) => {
            tracing::warn!(path = %path.as_ref().display(), %error, "dns: cannot read resolv.conf");
            Vec::new()
        }
    }
}

fn parse(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) => address.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    nameserver  2001:db8::53 \n;nameserver 9.9.9.9\nnameserver bogus\n\
                    options ndots:5\nnameserver fe80::1%eth0\n";
        let expected: Vec<SocketAddr> =
            vec!["10.0.0.2:53".parse().unwrap(), "[2001:db8::53]:53".parse().unwrap()];
        assert_eq!(parse(text), expected);
    }

    #[test]
    fn missing_file_gives_none() {
        assert!(upstreams_from_resolv_conf("/nonexistent/resolv.conf").is_empty());
    }
}
