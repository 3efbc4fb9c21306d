//! Changes to map and set elements: the part of an incremental sync that needs neither new
//! rules nor chains, and so goes to the kernel over netlink ([`crate::Nft::apply_elements`])
//! rather than through `nft`, whose every command that touches elements first loads the
//! whole ruleset (nft 1.0.6).

use std::fmt;
use std::net::IpAddr;

use crate::state::{Backend, IpFamily, MapKey, Verdict};

/// Whether elements are added or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Add,
    Delete,
}

/// One element of a map or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A verdict map element (the verdict is not needed to delete it, but kept for the text).
    Verdict { key: MapKey, verdict: Verdict },
    /// An endpoint's share `first..=last` of the random numbers, in an endpoint map.
    Range { first: u32, last: u32, backend: Backend },
    /// `address . address` in the `hairpin` set.
    Hairpin(IpAddr),
}

impl Element {
    /// The element as nft writes it: the key, then the value when `with_value`.
    fn write(&self, f: &mut fmt::Formatter<'_>, with_value: bool) -> fmt::Result {
        match self {
            Self::Verdict { key, verdict } if with_value => write!(f, "{key} : {verdict}"),
            Self::Verdict { key, .. } => write!(f, "{key}"),
            Self::Range { first, last, backend } if with_value => {
                write!(f, "{first}-{last} : {backend}")
            }
            Self::Range { first, last, .. } => write!(f, "{first}-{last}"),
            Self::Hairpin(ip) => write!(f, "{ip} . {ip}"),
        }
    }
}

/// Elements added to, or deleted from, one map or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    pub family: IpFamily,
    pub set: String,
    pub operation: Operation,
    pub elements: Vec<Element>,
}

/// Element changes of one table (in each family), applied as one transaction, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementBatch {
    pub table: String,
    pub changes: Vec<SetChange>,
}

impl ElementBatch {
    pub fn new(table: &str) -> Self {
        Self { table: table.to_owned(), changes: Vec::new() }
    }

    /// Appends `element`, to the last change when it concerns the same set and operation.
    pub fn push(&mut self, family: IpFamily, set: &str, operation: Operation, element: Element) {
        match self.changes.last_mut() {
            Some(last)
                if last.family == family && last.set == set && last.operation == operation =>
            {
                last.elements.push(element);
            }
            _ => self.changes.push(SetChange {
                family,
                set: set.to_owned(),
                operation,
                elements: vec![element],
            }),
        }
    }

    /// Appends the changes of `other`, after this batch's own.
    pub fn extend(&mut self, other: ElementBatch) {
        for change in other.changes {
            for element in change.elements {
                self.push(change.family, &change.set, change.operation, element);
            }
        }
    }

    /// The number of elements added or deleted.
    pub fn len(&self) -> usize {
        self.changes.iter().map(|change| change.elements.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for ElementBatch {
    /// The batch as nft commands, one element a line (what `nft -f` would do, slowly).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            let operation = match change.operation {
                Operation::Add => "add",
                Operation::Delete => "delete",
            };
            for element in &change.elements {
                write!(
                    f,
                    "{operation} element {} {} {} {{ ",
                    change.family.nft(),
                    self.table,
                    change.set
                )?;
                element.write(f, change.operation == Operation::Add)?;
                writeln!(f, " }}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Protocol;

    #[test]
    fn batches_group_by_set_and_print_as_nft_commands() {
        let mut batch = ElementBatch::new("t");
        let key = MapKey::Address("10.96.0.1".parse().unwrap(), Protocol::Tcp, 80);
        let verdict = Verdict::Goto("service-x".to_owned());
        batch.push(
            IpFamily::V4,
            "service-ips",
            Operation::Delete,
            Element::Verdict { key, verdict: verdict.clone() },
        );
        let backend = Backend { ip: "10.42.0.1".parse().unwrap(), port: 8080 };
        batch.push(
            IpFamily::V4,
            "service-x",
            Operation::Add,
            Element::Range { first: 0, last: 99, backend },
        );
        batch.push(
            IpFamily::V4,
            "service-x",
            Operation::Add,
            Element::Range { first: 100, last: 199, backend },
        );
        batch.push(IpFamily::V4, "hairpin", Operation::Add, Element::Hairpin(backend.ip));
        assert_eq!(batch.changes.len(), 3);
        assert_eq!(batch.len(), 4);
        assert_eq!(
            batch.to_string(),
            "delete element ip t service-ips { 10.96.0.1 . tcp . 80 }\n\
             add element ip t service-x { 0-99 : 10.42.0.1 . 8080 }\n\
             add element ip t service-x { 100-199 : 10.42.0.1 . 8080 }\n\
             add element ip t hairpin { 10.42.0.1 . 10.42.0.1 }\n"
        );
    }
}
