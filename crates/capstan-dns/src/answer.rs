//! Answering one query from a [`Records`] snapshot: pure, no IO. The server calls
//! [`answer`] and then does what the [`Resolution`] asks (send, forward, or complete a CNAME
//! from upstream).

use crate::records::{Records, fqdn, normalize};
use crate::wire::{
    Class, Edns, Header, Message, Name, Opcode, Question, RData, Rcode, Record, RecordType,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The UDP payload size advertised in our OPT records (the DNS flag day 2020 value, which
/// avoids IP fragmentation on common paths).
pub const ADVERTISED_PAYLOAD: u16 = 1232;

/// The payload a UDP answer must fit without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How many CNAMEs inside the zone are followed before the answer is returned as it stands.
const MAX_CNAME_CHAIN: usize = 8;

/// SOA timers (refresh, retry, expire), CoreDNS's values; the negative-caching TTL is the
/// zone's TTL.
const SOA_REFRESH: u32 = 7200;
const SOA_RETRY: u32 = 1800;
const SOA_EXPIRE: u32 = 86400;

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The zone answers with this message.
    Answer(Message),
    /// The answer ends in a CNAME to `target`, a name outside the zone (an ExternalName
    /// Service): the server appends upstream's records for `target` to `response`.
    Chase {
        /// The answer so far.
        response: Message,
        /// The name to resolve upstream, with the question's type.
        target: Name,
    },
    /// The name is outside the zone (or a reverse name the cluster does not own): the query
    /// goes to the upstream resolvers unchanged.
    Forward,
}

/// Decides the answer to `query` from `records`.
///
/// Names in the zone are answered authoritatively: data, NODATA (NOERROR, no answers, the
/// SOA in the authority section) when the name exists without data of the asked type, or
/// NXDOMAIN with the SOA. Pod names (`<a-b-c-d>.<ns>.pod.<zone>`) are answered from the name
/// itself. Reverse names of cluster addresses are answered; every other name is forwarded.
/// Malformed questions get FORMERR, opcodes other than QUERY get NOTIMP, and names in the zone
/// get SERVFAIL while `records` is not yet synced.
pub fn answer(query: &Message, records: &Records) -> Resolution {
    if query.header.response {
        return Resolution::Answer(error(query, Rcode::FORMERR));
    }
    if query.header.opcode != Opcode::QUERY {
        return Resolution::Answer(error(query, Rcode::NOTIMP));
    }
    let [question] = query.questions.as_slice() else {
        return Resolution::Answer(error(query, Rcode::FORMERR));
    };
    let qname = normalize(&question.name.to_string());
    let zone = records.zone();
    let in_zone = qname == zone || qname.ends_with(&format!(".{zone}"));
    if !in_zone && (!is_reverse(&qname) || records.lookup(&qname).is_none()) {
        return Resolution::Forward;
    }
    if question.qclass != Class::IN {
        return Resolution::Answer(error(query, Rcode::REFUSED));
    }
    if !records.synced() {
        return Resolution::Answer(error(query, Rcode::SERVFAIL));
    }
    let mut response = response_to(query);
    response.header.authoritative = true;
    match resolve(question, &qname, records, &mut response) {
        Some(target) => Resolution::Chase { response, target },
        None => Resolution::Answer(response),
    }
}

/// The answer sent when forwarding failed or timed out.
pub fn server_failure(query: &Message) -> Message {
    error(query, Rcode::SERVFAIL)
}

/// A response to `query` carrying only `code` (and the question, and an OPT record when the
/// query had one).
pub fn error(query: &Message, code: Rcode) -> Message {
    let mut response = response_to(query);
    response.header.rcode = code;
    response
}

/// The response skeleton: the query's ID, opcode, question and RD/CD bits, recursion
/// available (the server forwards), and an OPT record when the query had one (version 0,
/// whatever the query's; the DO bit is not echoed, as the zone has no DNSSEC records).
fn response_to(query: &Message) -> Message {
    Message {
        header: Header {
            id: query.header.id,
            response: true,
            opcode: query.header.opcode,
            recursion_desired: query.header.recursion_desired,
            recursion_available: true,
            checking_disabled: query.header.checking_disabled,
            ..Header::default()
        },
        questions: query.questions.clone(),
        edns: query.edns.as_ref().map(|_| Edns::new(ADVERTISED_PAYLOAD)),
        ..Message::default()
    }
}

/// Fills `response` for a question in the zone; returns the target of a CNAME leaving the
/// zone when the answer must be completed upstream.
fn resolve(
    question: &Question,
    qname: &str,
    records: &Records,
    response: &mut Message,
) -> Option<Name> {
    let qtype = question.qtype;
    let ttl = records.ttl();
    let zone = records.zone();
    if qname == zone {
        let data = match qtype {
            RecordType::SOA => Some(soa(records).data),
            RecordType::NS => fqdn(&format!("ns.dns.{zone}")).map(RData::Ns),
            _ => None,
        };
        match data {
            Some(data) => response.answers.push(Record::new(question.name.clone(), ttl, data)),
            None => no_data(response, records),
        }
        return None;
    }
    if let Some(rest) = qname.strip_suffix(&format!(".pod.{zone}")) {
        pod(question, rest, records, response);
        return None;
    }
    let mut owner = question.name.clone();
    let mut current = qname.to_owned();
    for _ in 0..MAX_CNAME_CHAIN {
        let Some(data) = records.lookup(&current) else {
            // NXDOMAIN describes the last name of a chain (RFC 6604).
            response.header.rcode = Rcode::NXDOMAIN;
            response.authorities.push(soa(records));
            return None;
        };
        let matching: Vec<&RData> =
            data.iter().filter(|d| qtype == RecordType::ANY || d.record_type() == qtype).collect();
        if !matching.is_empty() {
            for data in matching {
                response.answers.push(Record::new(owner.clone(), ttl, data.clone()));
                if let RData::Srv { target, .. } = data {
                    add_addresses(response, records, target);
                }
            }
            return None;
        }
        let cname = data.iter().find_map(|d| match d {
            RData::Cname(target) => Some(target.clone()),
            _ => None,
        });
        let Some(target) = cname else {
            no_data(response, records);
            return None;
        };
        response.answers.push(Record::new(owner, ttl, RData::Cname(target.clone())));
        let next = normalize(&target.to_string());
        if next != zone && !next.ends_with(&format!(".{zone}")) {
            return Some(target);
        }
        owner = target;
        current = next;
    }
    None
}

/// Pod names in CoreDNS's "pods insecure" mode: `<dashed-ip>.<ns>.pod.<zone>` resolves to
/// the address written in it, whatever the namespace; `<ns>.pod.<zone>` exists without data.
fn pod(question: &Question, rest: &str, records: &Records, response: &mut Message) {
    let Some((label, _namespace)) = rest.split_once('.').filter(|(_, ns)| !ns.contains('.')) else {
        if rest.contains('.') {
            nx_domain(response, records);
        } else {
            no_data(response, records);
        }
        return;
    };
    let data = if let Ok(ip) = label.replace('-', ".").parse::<Ipv4Addr>() {
        RData::A(ip)
    } else if let Ok(ip) = label.replace('-', ":").parse::<Ipv6Addr>() {
        RData::Aaaa(ip)
    } else {
        nx_domain(response, records);
        return;
    };
    let qtype = question.qtype;
    if qtype == RecordType::ANY || qtype == data.record_type() {
        response.answers.push(Record::new(question.name.clone(), records.ttl(), data));
    } else {
        no_data(response, records);
    }
}

/// The A/AAAA records of an SRV target, as additional records.
fn add_addresses(response: &mut Message, records: &Records, target: &Name) {
    let Some(data) = records.lookup(&normalize(&target.to_string())) else {
        return;
    };
    for data in data.iter().filter(|d| matches!(d, RData::A(_) | RData::Aaaa(_))) {
        let record = Record::new(target.clone(), records.ttl(), data.clone());
        if !response.additionals.contains(&record) {
            response.additionals.push(record);
        }
    }
}

fn no_data(response: &mut Message, records: &Records) {
    response.authorities.push(soa(records));
}

fn nx_domain(response: &mut Message, records: &Records) {
    response.header.rcode = Rcode::NXDOMAIN;
    response.authorities.push(soa(records));
}

/// The zone's SOA record.
fn soa(records: &Records) -> Record {
    let zone = records.zone();
    let apex = fqdn(zone).unwrap_or_else(Name::root);
    let mname = fqdn(&format!("ns.dns.{zone}")).unwrap_or_else(|| apex.clone());
    let rname = fqdn(&format!("hostmaster.{zone}")).unwrap_or_else(|| apex.clone());
    let ttl = records.ttl();
    let data = RData::Soa {
        mname,
        rname,
        serial: records.serial(),
        refresh: SOA_REFRESH,
        retry: SOA_RETRY,
        expire: SOA_EXPIRE,
        minimum: ttl,
    };
    Record::new(apex, ttl, data)
}

fn is_reverse(name: &str) -> bool {
    name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn query(name: &str, qtype: RecordType) -> Message {
        Message {
            header: Header { id: 0x1234, recursion_desired: true, ..Header::default() },
            questions: vec![Question::new(Name::from_ascii(name).unwrap(), qtype)],
            ..Message::default()
        }
    }

    fn render(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect()
    }

    /// Answers `name`/`qtype` from the fixture and renders the outcome: the response code,
    /// then the answers, then `authority:` and `additional:` lines.
    fn check(name: &str, qtype: RecordType, expected: &[&str]) {
        let resolution = answer(&query(name, qtype), &fixtures::records());
        let response = match resolution {
            Resolution::Answer(response) => response,
            other => panic!("{name} {qtype}: expected an answer, got {other:?}"),
        };
        assert!(response.header.authoritative);
        let mut rendered = vec![response.header.rcode.to_string()];
        rendered.extend(render(&response.answers));
        rendered
            .extend(render(&response.authorities).into_iter().map(|r| format!("authority: {r}")));
        rendered
            .extend(render(&response.additionals).into_iter().map(|r| format!("additional: {r}")));
        assert_eq!(rendered, expected, "{name} {qtype}");
    }

    const SOA: &str = "authority: cluster.local. 5 SOA ns.dns.cluster.local. \
                       hostmaster.cluster.local. 42 7200 1800 86400 5";

    #[test]
    fn cluster_ip_services() {
        check(
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            &["NOERROR", "kubernetes.default.svc.cluster.local. 5 A 10.43.0.1"],
        );
        check(
            "web.prod.svc.cluster.local.",
            RecordType::A,
            &["NOERROR", "web.prod.svc.cluster.local. 5 A 10.43.0.10"],
        );
        check(
            "web.prod.svc.cluster.local.",
            RecordType::AAAA,
            &["NOERROR", "web.prod.svc.cluster.local. 5 AAAA fd00::10"],
        );
        // Only the Service's IP: its endpoints are not published for a ClusterIP Service.
        check("kubernetes.default.svc.cluster.local.", RecordType::AAAA, &["NOERROR", SOA]);
    }

    #[test]
    fn case_and_trailing_dot() {
        check(
            "Kubernetes.DEFAULT.svc.Cluster.Local.",
            RecordType::A,
            &["NOERROR", "Kubernetes.DEFAULT.svc.Cluster.Local. 5 A 10.43.0.1"],
        );
        check(
            "kubernetes.default.svc.cluster.local",
            RecordType::A,
            &["NOERROR", "kubernetes.default.svc.cluster.local. 5 A 10.43.0.1"],
        );
    }

    #[test]
    fn headless_services() {
        check(
            "db.prod.svc.cluster.local.",
            RecordType::A,
            &[
                "NOERROR",
                "db.prod.svc.cluster.local. 5 A 10.42.0.5",
                "db.prod.svc.cluster.local. 5 A 10.42.0.6",
                "db.prod.svc.cluster.local. 5 A 10.42.0.8",
            ],
        );
        check(
            "db-0.db.prod.svc.cluster.local.",
            RecordType::A,
            &["NOERROR", "db-0.db.prod.svc.cluster.local. 5 A 10.42.0.5"],
        );
        check(
            "10-42-0-8.db.prod.svc.cluster.local.",
            RecordType::A,
            &["NOERROR", "10-42-0-8.db.prod.svc.cluster.local. 5 A 10.42.0.8"],
        );
        // Not ready: not published.
        check("db-2.db.prod.svc.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        // A headless Service without endpoints exists, without addresses.
        check("empty.prod.svc.cluster.local.", RecordType::A, &["NOERROR", SOA]);
    }

    #[test]
    fn srv_records() {
        check(
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
            &[
                "NOERROR",
                "_https._tcp.kubernetes.default.svc.cluster.local. 5 SRV 0 100 443 \
             kubernetes.default.svc.cluster.local.",
                "additional: kubernetes.default.svc.cluster.local. 5 A 10.43.0.1",
            ],
        );
        check(
            "_dns._udp.web.prod.svc.cluster.local.",
            RecordType::SRV,
            &[
                "NOERROR",
                "_dns._udp.web.prod.svc.cluster.local. 5 SRV 0 100 53 web.prod.svc.cluster.local.",
                "additional: web.prod.svc.cluster.local. 5 A 10.43.0.10",
                "additional: web.prod.svc.cluster.local. 5 AAAA fd00::10",
            ],
        );
        check(
            "_pg._tcp.db.prod.svc.cluster.local.",
            RecordType::SRV,
            &[
                "NOERROR",
                "_pg._tcp.db.prod.svc.cluster.local. 5 SRV 0 100 5432 db-0.db.prod.svc.cluster.local.",
                "_pg._tcp.db.prod.svc.cluster.local. 5 SRV 0 100 5432 db-1.db.prod.svc.cluster.local.",
                "_pg._tcp.db.prod.svc.cluster.local. 5 SRV 0 100 5432 \
             10-42-0-8.db.prod.svc.cluster.local.",
                "additional: db-0.db.prod.svc.cluster.local. 5 A 10.42.0.5",
                "additional: db-1.db.prod.svc.cluster.local. 5 A 10.42.0.6",
                "additional: 10-42-0-8.db.prod.svc.cluster.local. 5 A 10.42.0.8",
            ],
        );
        // The protocol must match, and unnamed ports have no SRV record.
        check("_http._udp.web.prod.svc.cluster.local.", RecordType::SRV, &["NXDOMAIN", SOA]);
        // `_tcp.<svc>` is an empty non-terminal.
        check("_tcp.web.prod.svc.cluster.local.", RecordType::SRV, &["NOERROR", SOA]);
    }

    #[test]
    fn external_names() {
        let resolution =
            answer(&query("ext.prod.svc.cluster.local.", RecordType::A), &fixtures::records());
        let Resolution::Chase { response, target } = resolution else {
            panic!("expected a chase, got {resolution:?}");
        };
        assert_eq!(target.to_string(), "example.com.");
        assert_eq!(render(&response.answers), ["ext.prod.svc.cluster.local. 5 CNAME example.com."]);
        check(
            "ext.prod.svc.cluster.local.",
            RecordType::CNAME,
            &["NOERROR", "ext.prod.svc.cluster.local. 5 CNAME example.com."],
        );
        // A CNAME inside the zone is followed.
        check(
            "alias.prod.svc.cluster.local.",
            RecordType::A,
            &[
                "NOERROR",
                "alias.prod.svc.cluster.local. 5 CNAME web.prod.svc.cluster.local.",
                "web.prod.svc.cluster.local. 5 A 10.43.0.10",
            ],
        );
    }

    #[test]
    fn reverse_lookups() {
        check(
            "1.0.43.10.in-addr.arpa.",
            RecordType::PTR,
            &["NOERROR", "1.0.43.10.in-addr.arpa. 5 PTR kubernetes.default.svc.cluster.local."],
        );
        check(
            "6.0.42.10.in-addr.arpa.",
            RecordType::PTR,
            &["NOERROR", "6.0.42.10.in-addr.arpa. 5 PTR db-1.db.prod.svc.cluster.local."],
        );
        let ip6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        check(
            ip6,
            RecordType::PTR,
            &["NOERROR", &format!("{ip6} 5 PTR web.prod.svc.cluster.local.")],
        );
        // Addresses the cluster does not own go upstream.
        for name in ["7.0.42.10.in-addr.arpa.", "8.8.8.8.in-addr.arpa.", "43.10.in-addr.arpa."] {
            let resolution = answer(&query(name, RecordType::PTR), &fixtures::records());
            assert_eq!(resolution, Resolution::Forward, "{name}");
        }
    }

    #[test]
    fn missing_names_and_types() {
        check("nope.prod.svc.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("a.b.web.prod.svc.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("nope.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("web.prod.svc.cluster.local.", RecordType::MX, &["NOERROR", SOA]);
        check("prod.svc.cluster.local.", RecordType::A, &["NOERROR", SOA]);
        check("svc.cluster.local.", RecordType::A, &["NOERROR", SOA]);
        check("cluster.local.", RecordType::A, &["NOERROR", SOA]);
        check(
            "cluster.local.",
            RecordType::SOA,
            &[
                "NOERROR",
                "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 \
             86400 5",
            ],
        );
        check(
            "dns-version.cluster.local.",
            RecordType::TXT,
            &["NOERROR", "dns-version.cluster.local. 5 TXT \"1.1.0\""],
        );
    }

    #[test]
    fn pod_names() {
        check(
            "10-42-0-9.prod.pod.cluster.local.",
            RecordType::A,
            &["NOERROR", "10-42-0-9.prod.pod.cluster.local. 5 A 10.42.0.9"],
        );
        check(
            "fd00--9.any.pod.cluster.local.",
            RecordType::AAAA,
            &["NOERROR", "fd00--9.any.pod.cluster.local. 5 AAAA fd00::9"],
        );
        check("10-42-0-9.prod.pod.cluster.local.", RecordType::AAAA, &["NOERROR", SOA]);
        check("not-an-ip.prod.pod.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("x.10-42-0-9.prod.pod.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("prod.pod.cluster.local.", RecordType::A, &["NOERROR", SOA]);
    }

    #[test]
    fn names_outside_the_zone_are_forwarded() {
        // What a pod's search path produces for an outside name: none is in the zone proper.
        for name in [
            "example.com.",
            "example.com.prod.svc.cluster.local.x.",
            "cluster.local.example.",
            "local.",
        ] {
            let resolution = answer(&query(name, RecordType::A), &fixtures::records());
            assert_eq!(resolution, Resolution::Forward, "{name}");
        }
        // The search path's expansions inside the zone are answered NXDOMAIN, so the
        // resolver moves on to the next one and finally to the name as given.
        check("example.com.prod.svc.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("example.com.svc.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
        check("example.com.cluster.local.", RecordType::A, &["NXDOMAIN", SOA]);
    }

    #[test]
    fn edns_and_errors() {
        let records = fixtures::records();
        let mut with_edns = query("kubernetes.default.svc.cluster.local.", RecordType::A);
        with_edns.edns = Some(Edns::new(4096));
        let Resolution::Answer(response) = answer(&with_edns, &records) else {
            panic!("expected an answer");
        };
        assert_eq!(response.edns.map(|e| e.payload), Some(ADVERTISED_PAYLOAD));
        assert_eq!(response.header.id, with_edns.header.id);
        assert!(response.header.recursion_desired && response.header.recursion_available);

        let Resolution::Answer(response) =
            answer(&query("kubernetes.default.svc.cluster.local.", RecordType::A), &records)
        else {
            panic!("expected an answer");
        };
        assert!(response.edns.is_none());

        let unsynced = Records::unsynced("cluster.local", 5);
        let query_in_zone = query("kubernetes.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            answer(&query_in_zone, &unsynced),
            Resolution::Answer(error(&query_in_zone, Rcode::SERVFAIL))
        );
        assert_eq!(answer(&query("example.com.", RecordType::A), &unsynced), Resolution::Forward);

        let mut two_questions = query("kubernetes.default.svc.cluster.local.", RecordType::A);
        two_questions.questions.push(Question::new(Name::from_ascii("x.").unwrap(), RecordType::A));
        let Resolution::Answer(response) = answer(&two_questions, &records) else {
            panic!("expected an answer");
        };
        assert_eq!(response.header.rcode, Rcode::FORMERR);
    }

    #[test]
    fn other_zones() {
        let records = Records::build("Example.Internal.", 30, &fixtures::services(), &[]);
        let Resolution::Answer(response) =
            answer(&query("kubernetes.default.svc.example.internal.", RecordType::A), &records)
        else {
            panic!("expected an answer");
        };
        assert_eq!(
            render(&response.answers),
            ["kubernetes.default.svc.example.internal. 30 A 10.43.0.1"]
        );
        assert_eq!(
            answer(&query("kubernetes.default.svc.cluster.local.", RecordType::A), &records),
            Resolution::Forward
        );
    }
}
