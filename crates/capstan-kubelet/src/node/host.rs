//! What the node reports about the machine it runs on, read from procfs, sysfs and
//! `statvfs`, behind [`HostInfo`] so that the status logic can be tested with a fake.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

/// A reading of the host that failed: the file (or path) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Parse { path: PathBuf, problem: &'static str },
}

/// Physical memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`: what can be allocated without swapping.
    pub available: u64,
}

/// One filesystem's size and free space, as `statvfs` sees it from an unprivileged user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemReading {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// Who the machine is (`nodeInfo`). Fields the host cannot tell are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemIdentity {
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
}

/// The host readings the node's status is built from.
pub trait HostInfo: Send + Sync + std::fmt::Debug {
    /// The number of online CPUs.
    fn online_cpus(&self) -> Result<u32, HostError>;
    /// Total and available memory.
    fn memory(&self) -> Result<MemoryReading, HostError>;
    /// The filesystem holding `path`.
    fn filesystem(&self, path: &Path) -> Result<FilesystemReading, HostError>;
    /// The IPv4 address of the interface that holds the default route, if there is one.
    fn default_ipv4(&self) -> Option<Ipv4Addr>;
    /// Kernel, OS and machine identifiers.
    fn identity(&self) -> SystemIdentity;
}

/// The machine this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalHost;

fn read(path: &str) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read { path: path.into(), source })
}

/// A one-line file, trimmed; empty when it cannot be read (DMI is root-only on many hosts).
fn read_line(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_default()
}

impl HostInfo for LocalHost {
    fn online_cpus(&self) -> Result<u32, HostError> {
        const PATH: &str = "/sys/devices/system/cpu/online";
        parse_cpu_list(&read(PATH)?)
            .ok_or(HostError::Parse { path: PATH.into(), problem: "not a CPU list" })
    }

    fn memory(&self) -> Result<MemoryReading, HostError> {
        const PATH: &str = "/proc/meminfo";
        parse_meminfo(&read(PATH)?)
            .ok_or(HostError::Parse { path: PATH.into(), problem: "no MemTotal or MemAvailable" })
    }

    fn filesystem(&self, path: &Path) -> Result<FilesystemReading, HostError> {
        let stat = rustix::fs::statvfs(path).map_err(|errno| HostError::Read {
            path: path.to_owned(),
            source: std::io::Error::from(errno),
        })?;
        Ok(FilesystemReading {
            capacity_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            available_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            inodes: stat.f_files,
            inodes_free: stat.f_ffree,
        })
    }

    fn default_ipv4(&self) -> Option<Ipv4Addr> {
        let route = parse_default_route(&std::fs::read_to_string("/proc/net/route").ok()?)?;
        let address = source_address_towards(&route);
        tracing::debug!(interface = %route.interface, ?address, "the default route's address");
        address
    }

    fn identity(&self) -> SystemIdentity {
        SystemIdentity {
            kernel_version: read_line("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|text| parse_os_release_pretty_name(&text))
                .unwrap_or_else(|| "Linux".to_owned()),
            machine_id: read_line("/etc/machine-id"),
            system_uuid: read_line("/sys/class/dmi/id/product_uuid"),
            boot_id: read_line("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// The default route of `/proc/net/route`: its interface and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultRoute {
    pub(crate) interface: String,
    pub(crate) gateway: Ipv4Addr,
}

/// The address the kernel would send from to reach the default route's gateway: the
/// address of the route's interface. Connecting a UDP socket sends nothing; it only makes
/// the kernel choose the route and the source address.
fn source_address_towards(route: &DefaultRoute) -> Option<Ipv4Addr> {
    // A default route without a gateway (a point-to-point link) still routes any address.
    let target =
        if route.gateway.is_unspecified() { Ipv4Addr::new(192, 0, 2, 1) } else { route.gateway };
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((target, 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(address) if !address.is_unspecified() => Some(address),
        _ => None,
    }
}

/// The lowest-metric default route (destination and mask 0) that is up, from the text of
/// `/proc/net/route`, whose addresses are little-endian hex.
pub(crate) fn parse_default_route(text: &str) -> Option<DefaultRoute> {
    const RTF_UP: u32 = 0x1;
    let mut best: Option<(u32, DefaultRoute)> = None;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [interface, destination, gateway, flags, _refcnt, _use, metric, mask, ..] =
            fields.as_slice()
        else {
            continue;
        };
        let hex = |field: &str| u32::from_str_radix(field, 16).ok();
        let (Some(destination), Some(gateway), Some(flags), Some(mask)) =
            (hex(destination), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        let metric = metric.parse::<u32>().unwrap_or(u32::MAX);
        if destination != 0 || mask != 0 || flags & RTF_UP == 0 {
            continue;
        }
        let route = DefaultRoute {
            interface: (*interface).to_owned(),
            gateway: Ipv4Addr::from(gateway.swap_bytes()),
        };
        if best.as_ref().is_none_or(|(lowest, _)| metric < *lowest) {
            best = Some((metric, route));
        }
    }
    best.map(|(_, route)| route)
}

/// The number of CPUs in a sysfs CPU list such as `0-3,8,10-11`.
pub(crate) fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?),
            None => {
                let only = part.parse::<u32>().ok()?;
                (only, only)
            }
        };
        count = count.checked_add(last.checked_sub(first)? + 1)?;
    }
    (count > 0).then_some(count)
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub(crate) fn parse_meminfo(text: &str) -> Option<MemoryReading> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kibibytes = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
            kibibytes.checked_mul(1024)
        })
    };
    Some(MemoryReading { total: field("MemTotal")?, available: field("MemAvailable")? })
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub(crate) fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let value = text.lines().find_map(|line| line.trim().strip_prefix("PRETTY_NAME="))?;
    let value = value.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    (!unquoted.is_empty()).then(|| unquoted.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        for (text, expected) in [
            ("0\n", Some(1)),
            ("0-1\n", Some(2)),
            ("0-3,8,10-11", Some(7)),
            ("", None),
            ("3-1", None),
            ("a-b", None),
        ] {
            assert_eq!(parse_cpu_list(text), expected, "{text:?}");
        }
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:        8048576 kB\nMemFree:  100 kB\nMemAvailable:    4024288 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemoryReading { total: 8048576 * 1024, available: 4024288 * 1024 })
        );
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None);
    }

    #[test]
    fn os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release_pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
    }

    #[test]
    fn default_route_with_the_lowest_metric() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
            down0\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_route(text),
            Some(DefaultRoute {
                interface: "wlan0".into(),
                gateway: Ipv4Addr::new(192, 168, 1, 1)
            })
        );
        let only_local = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_default_route(only_local), None);
    }
}
