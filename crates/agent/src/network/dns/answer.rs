//! One query to its reply, with no I/O: decode, find the zone the name is in (the
//! cluster's, the network's domain, a known reverse name), answer from the index —
//! authoritatively, with an SOA beside negative answers so clients cache them briefly —
//! or say to forward it. UDP answers larger than the client takes are sent truncated
//! (TC set, no records), so the client asks again over TCP.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{CLUSTER_DOMAIN, Data, DnsIndex, Names};

/// How long clients may cache an answer: short, as Services and ports come and go
/// (CoreDNS's default for cluster names too).
pub const TTL: u32 = 5;
/// The largest UDP answer for a client that speaks EDNS: the DNS flag day's figure, which
/// keeps answers clear of IP fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The largest UDP answer for a client that does not (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;
/// The most CNAMEs followed in one answer (ExternalName Services naming each other).
const MAX_ALIASES: usize = 8;

/// How a query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Ask the upstream resolvers (see [`Forward`]).
    Forward(Forward),
    /// Send nothing (a response, or too short to carry an id).
    Drop,
}

/// A query the upstream resolvers answer: the client's own, for a name that is not the
/// cluster's, or the end of a CNAME chain the cluster answered the start of (an
/// ExternalName Service's external name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    chase: Option<Box<Chase>>,
}

/// The answer so far (the question and the CNAMEs up to `target`), waiting for
/// `target`'s records.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Chase {
    response: Message,
    target: Name,
    wanted: RecordType,
    limit: usize,
}

impl Forward {
    /// The client's query, asked upstream as it is.
    pub const AS_IS: Forward = Forward { chase: None };

    /// The query to ask the upstream resolvers, given the client's.
    pub fn request(&self, request: &[u8]) -> Option<Vec<u8>> {
        let Some(chase) = &self.chase else {
            return Some(request.to_vec());
        };
        let metadata = &chase.response.metadata;
        let mut query = Message::new(metadata.id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(chase.target.clone(), chase.wanted));
        query.edns = chase.response.edns.clone();
        query.to_vec().ok()
    }

    /// The client's reply, given the upstream's to [`Forward::request`] (`None`: no
    /// upstream answered, and the client gets SERVFAIL).
    pub fn reply(
        self,
        request: &[u8],
        upstream: Option<Vec<u8>>,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let Some(chase) = self.chase else {
            return upstream.or_else(|| server_failure(request, transport));
        };
        let Chase {
            mut response,
            limit,
            ..
        } = *chase;
        match upstream.as_deref().map(Message::from_vec) {
            Some(Ok(answer)) => {
                response.metadata.response_code = answer.metadata.response_code;
                // Too large for the upstream's UDP answer: the client asks again over TCP.
                response.metadata.truncation = answer.metadata.truncation;
                response.answers.extend(answer.answers);
            }
            _ => response.metadata.response_code = ResponseCode::ServFail,
        }
        match encode(response, limit) {
            Reply::Answer(bytes) => Some(bytes),
            Reply::Forward(_) | Reply::Drop => None,
        }
    }
}

/// Where a name was found.
enum Resolution {
    Forward,
    /// `records` of the name in the zone with apex `zone` (`None`: no such name).
    Authoritative {
        zone: Option<String>,
        records: Option<Vec<Data>>,
        names: Option<NamesRef>,
    },
    Failure,
    Refused,
}

/// Where SRV targets are looked up for the additional section.
#[derive(Clone, Copy)]
enum NamesRef {
    Project,
    Network,
}

fn is_in(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

fn resolve(index: &DnsIndex, network_id: &str, question: &Query, name: &str) -> Resolution {
    let network = index.network(network_id);
    let reverse = is_in(name, "in-addr.arpa") || is_in(name, "ip6.arpa");
    let ours = is_in(name, CLUSTER_DOMAIN) || network.is_some_and(|n| is_in(name, &n.domain));
    if question.query_class() != DNSClass::IN {
        return if ours {
            Resolution::Refused
        } else {
            Resolution::Forward
        };
    }
    let Some(network) = network else {
        // The index does not know the network yet: nothing is sure about our own names.
        return if is_in(name, CLUSTER_DOMAIN) || reverse {
            Resolution::Failure
        } else {
            Resolution::Forward
        };
    };
    let project = index.project(&network.project);
    if is_in(name, CLUSTER_DOMAIN) {
        return Resolution::Authoritative {
            zone: Some(CLUSTER_DOMAIN.to_owned()),
            records: project
                .and_then(|names| names.lookup(name))
                .map(<[Data]>::to_vec),
            names: Some(NamesRef::Project),
        };
    }
    if is_in(name, &network.domain) {
        return Resolution::Authoritative {
            zone: Some(network.domain.clone()),
            records: network.hosts.lookup(name).map(<[Data]>::to_vec),
            names: Some(NamesRef::Network),
        };
    }
    if reverse {
        // Only the addresses the index knows; the rest of the reverse tree is upstream's.
        let found = network
            .hosts
            .lookup(name)
            .filter(|records| !records.is_empty())
            .or_else(|| {
                project
                    .and_then(|names| names.lookup(name))
                    .filter(|records| !records.is_empty())
            });
        if let Some(records) = found {
            return Resolution::Authoritative {
                zone: None,
                records: Some(records.to_vec()),
                names: None,
            };
        }
    }
    Resolution::Forward
}

fn name_of(text: &str) -> Option<Name> {
    Name::from_ascii(format!("{text}.")).ok()
}

fn record(owner: &Name, data: &Data) -> Option<Record> {
    let rdata = match data {
        Data::Address(IpAddr::V4(ip)) => RData::A(A(*ip)),
        Data::Address(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
        Data::Srv { port, target } => RData::SRV(SRV::new(0, 100, *port, name_of(target)?)),
        Data::Ptr(target) => RData::PTR(PTR(name_of(target)?)),
        Data::Alias(target) => RData::CNAME(CNAME(name_of(target)?)),
    };
    Some(Record::from_rdata(owner.clone(), TTL, rdata))
}

fn matches(data: &Data, wanted: RecordType) -> bool {
    matches!(
        (data, wanted),
        (_, RecordType::ANY)
            | (Data::Address(IpAddr::V4(_)), RecordType::A)
            | (Data::Address(IpAddr::V6(_)), RecordType::AAAA)
            | (Data::Srv { .. }, RecordType::SRV)
            | (Data::Ptr(_), RecordType::PTR)
            | (Data::Alias(_), RecordType::CNAME)
    )
}

/// The name an alias points to, if `records` are one.
fn alias_in(records: &[Data]) -> Option<&str> {
    records.iter().find_map(|data| match data {
        Data::Alias(target) => Some(target.as_str()),
        _ => None,
    })
}

/// Answers with the CNAME chain from `owner` to `target` on, followed through the index
/// as far as it goes (at most [`MAX_ALIASES`] links): with the records asked for at its
/// end, or, where the chain leaves the names the index holds, with the upstream's.
fn follow(
    index: &DnsIndex,
    network_id: &str,
    mut response: Message,
    mut owner: Name,
    mut target: String,
    wanted: RecordType,
    limit: usize,
) -> Reply {
    for _ in 0..MAX_ALIASES {
        let Some(target_name) = name_of(&target) else {
            break;
        };
        response
            .answers
            .extend(record(&owner, &Data::Alias(target.clone())));
        let question = Query::query(target_name.clone(), wanted);
        match resolve(index, network_id, &question, &target) {
            Resolution::Forward => {
                let chase = Chase {
                    response,
                    target: target_name,
                    wanted,
                    limit,
                };
                let chase = Some(Box::new(chase));
                return Reply::Forward(Forward { chase });
            }
            Resolution::Authoritative { records: None, .. } => {
                response.metadata.response_code = ResponseCode::NXDomain;
                return encode(response, limit);
            }
            Resolution::Authoritative {
                records: Some(records),
                ..
            } => {
                if let Some(next) = alias_in(&records) {
                    (owner, target) = (target_name, next.to_owned());
                    continue;
                }
                response.answers.extend(
                    records
                        .iter()
                        .filter(|data| matches(data, wanted))
                        .filter_map(|data| record(&target_name, data)),
                );
                return encode(response, limit);
            }
            Resolution::Failure | Resolution::Refused => break,
        }
    }
    // A loop of aliases, or a name that is not one.
    response.metadata.response_code = ResponseCode::ServFail;
    encode(response, limit)
}

fn soa(zone: &str) -> Option<Record> {
    let rdata = SOA::new(
        name_of(&format!("ns.dns.{zone}"))?,
        name_of(&format!("hostmaster.{zone}"))?,
        1,
        7200,
        1800,
        86400,
        TTL,
    );
    Some(Record::from_rdata(name_of(zone)?, TTL, RData::SOA(rdata)))
}

/// A response to `query` with its header, question and EDNS in place.
fn response_to(query: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = query.metadata.checking_disabled;
    response.metadata.response_code = code;
    response.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.edns = Some(edns);
    }
    response
}

/// How large an answer to `query` may be over `transport`.
fn size_limit(query: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp if query.edns.is_some() => {
            usize::from(query.max_payload().min(MAX_UDP_PAYLOAD))
        }
        Transport::Udp => PLAIN_UDP_PAYLOAD,
    }
}

/// The response's bytes, truncated to the question (TC set) when they exceed `limit`.
fn encode(mut response: Message, limit: usize) -> Reply {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return Reply::Answer(bytes),
        Ok(_) => {
            response.answers.clear();
            response.authorities.clear();
            response.additionals.clear();
            response.metadata.truncation = true;
        }
        Err(error) => {
            tracing::warn!(%error, "a DNS answer could not be encoded");
            response.answers.clear();
            response.authorities.clear();
            response.additionals.clear();
            response.metadata.response_code = ResponseCode::ServFail;
        }
    }
    match response.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Drop,
    }
}

/// A query's id and whether it is one (QR clear), from the raw header.
fn query_id(request: &[u8]) -> Option<u16> {
    match request {
        [high, low, flags, ..] if flags & 0x80 == 0 => Some(u16::from_be_bytes([*high, *low])),
        _ => None,
    }
}

/// The reply to `request`, a DNS message from a workload on network `network_id`.
pub fn answer(index: &DnsIndex, network_id: &str, request: &[u8], transport: Transport) -> Reply {
    let query = match Message::from_vec(request) {
        Ok(query) => query,
        Err(_) => {
            // A query too broken to read still deserves FORMERR, if it has an id.
            return match query_id(request) {
                Some(id) => Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .map_or(Reply::Drop, Reply::Answer),
                None => Reply::Drop,
            };
        }
    };
    if query.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let limit = size_limit(&query, transport);
    if query.metadata.op_code != OpCode::Query {
        return encode(response_to(&query, ResponseCode::NotImp), limit);
    }
    let [question] = query.queries.as_slice() else {
        return encode(response_to(&query, ResponseCode::FormErr), limit);
    };
    let name = question.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let (zone, records, names) = match resolve(index, network_id, question, name) {
        Resolution::Forward => return Reply::Forward(Forward::AS_IS),
        Resolution::Failure => return encode(response_to(&query, ResponseCode::ServFail), limit),
        Resolution::Refused => return encode(response_to(&query, ResponseCode::Refused), limit),
        Resolution::Authoritative {
            zone,
            records,
            names,
        } => (zone, records, names),
    };
    let mut response = response_to(&query, ResponseCode::NoError);
    response.metadata.authoritative = true;
    let wanted = question.query_type();
    // The owner is the question's name as asked: clients that randomize its case check it.
    let owner = question.name();
    if let Some(target) = records.as_deref().and_then(alias_in)
        && !matches!(wanted, RecordType::CNAME | RecordType::ANY)
    {
        let (owner, target) = (owner.clone(), target.to_owned());
        return follow(index, network_id, response, owner, target, wanted, limit);
    }
    match &records {
        None => response.metadata.response_code = ResponseCode::NXDomain,
        Some(records) => {
            response.answers = records
                .iter()
                .filter(|data| matches(data, wanted))
                .filter_map(|data| record(owner, data))
                .collect();
            if zone.as_deref() == Some(name) && matches!(wanted, RecordType::SOA | RecordType::ANY)
            {
                response.answers.extend(soa(name));
            }
        }
    }
    if response.answers.is_empty() {
        response.authorities.extend(zone.as_deref().and_then(soa));
    } else if let (Some(records), Some(names)) = (&records, names) {
        response.additionals = additional_addresses(index, network_id, records, wanted, names);
    }
    encode(response, limit)
}

/// The addresses of the SRV targets answered, when the index has them.
fn additional_addresses(
    index: &DnsIndex,
    network_id: &str,
    records: &[Data],
    wanted: RecordType,
    names: NamesRef,
) -> Vec<Record> {
    if wanted != RecordType::SRV {
        return Vec::new();
    }
    let Some(network) = index.network(network_id) else {
        return Vec::new();
    };
    let zone: Option<&Names> = match names {
        NamesRef::Project => index.project(&network.project),
        NamesRef::Network => Some(&network.hosts),
    };
    let Some(zone) = zone else {
        return Vec::new();
    };
    let mut additionals = Vec::new();
    for data in records {
        let Data::Srv { target, .. } = data else {
            continue;
        };
        let Some(owner) = name_of(target) else {
            continue;
        };
        for address in zone.lookup(target).unwrap_or_default() {
            if matches!(address, Data::Address(_))
                && let Some(record) = record(&owner, address)
                && !additionals.contains(&record)
            {
                additionals.push(record);
            }
        }
    }
    additionals
}

/// SERVFAIL for `request` (the upstream resolvers did not answer), if it is a query.
pub fn server_failure(request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(request).ok()?;
    match encode(
        response_to(&query, ResponseCode::ServFail),
        size_limit(&query, transport),
    ) {
        Reply::Answer(bytes) => Some(bytes),
        Reply::Forward(_) | Reply::Drop => None,
    }
}
