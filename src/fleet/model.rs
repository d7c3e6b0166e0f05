//! The fleet model as TOML text, and how it meets a node's own file. Pure: no I/O.
//!
//! With `[cluster]`, what the admin API changes lives in Redis as one TOML document, the
//! *model*: the tables in [`FLEET_KEYS`], with every node's `[[ip]]` entries marked
//! `node = "..."`. The node's file keeps what belongs to the host (listeners, spool, TLS, DNS,
//! shaping, routes) and, in `[[ip]]`, the addresses this node can bind. A node runs on the
//! *effective* config: its file with the fleet tables replaced by the model's. An admin change is
//! made on the effective document with the same editing code a single relay uses, and the fleet
//! tables of the result become the new model.

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The top-level tables that belong to the fleet, not to one host.
pub const FLEET_KEYS: [&str; 7] = [
    "pool",
    "ip",
    "configuration_set",
    "identity",
    "warmup",
    "account",
    "suppression",
];

/// Why a model or a node's file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the {what} is not valid TOML: {detail}")]
    Syntax { what: &'static str, detail: String },
    #[error(
        "IP {address} belongs to node {owner}; an IP belongs to exactly one node (remove it from this node's [[ip]] list, or from node {owner}'s first)"
    )]
    IpOfAnotherNode { address: String, owner: String },
    #[error("{0}")]
    Shape(String),
}

fn parse(text: &str, what: &'static str) -> Result<DocumentMut, ModelError> {
    text.parse::<DocumentMut>()
        .map_err(|error| ModelError::Syntax {
            what,
            detail: error.to_string(),
        })
}

/// The fleet tables of a whole config text (a single relay's file, or an effective config after
/// an edit), with `[[ip]]` entries that name no node given `node`.
pub fn model_of(config_text: &str, node: &str) -> Result<String, ModelError> {
    let config = parse(config_text, "config")?;
    let mut model = DocumentMut::new();
    for key in FLEET_KEYS {
        if let Some(item) = config.get(key) {
            model.insert(key, item.clone());
        }
    }
    for table in ip_tables(&mut model)?.iter_mut() {
        if !table.contains_key("node") {
            table.insert("node", value(node));
        }
    }
    Ok(model.to_string())
}

/// The config a node runs on: its file without fleet tables, then the model's.
pub fn effective(host_text: &str, model_text: &str) -> Result<String, ModelError> {
    let mut host = parse(host_text, "node's config")?;
    let model = parse(model_text, "fleet model")?;
    for key in FLEET_KEYS {
        host.remove(key);
    }
    let mut out = host.to_string();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out.push_str("\n# --- the fleet model (kept in Redis) ---\n");
    out.push_str(&model.to_string());
    Ok(out)
}

/// The addresses of the `[[ip]]` entries of a node's own file.
pub fn host_addresses(host_text: &str) -> Result<Vec<(std::net::IpAddr, Table)>, ModelError> {
    let mut host = parse(host_text, "node's config")?;
    let mut out = Vec::new();
    for table in ip_tables(&mut host)?.iter() {
        let Some(text) = table.get("address").and_then(Item::as_str) else {
            return Err(ModelError::Shape("an [[ip]] entry has no address".into()));
        };
        let address = text
            .parse::<std::net::IpAddr>()
            .map_err(|_| ModelError::Shape(format!("{text:?} is not an IP address")))?;
        out.push((address.to_canonical(), table.clone()));
    }
    Ok(out)
}

/// Makes the model's IPs of `node` exactly the addresses in `node`'s file: an address new to
/// the fleet is added (with its file entry's settings, its pool kept only if the fleet has that
/// pool), one no longer in the file is dropped, one that another node holds is refused.
/// Returns the new model text, or `None` when nothing changes.
pub fn claim(host_text: &str, model_text: &str, node: &str) -> Result<Option<String>, ModelError> {
    let host = host_addresses(host_text)?;
    let mut model = parse(model_text, "fleet model")?;
    let pools: Vec<String> = match model.get("pool").and_then(Item::as_array_of_tables) {
        Some(pools) => pools
            .iter()
            .filter_map(|t| t.get("name").and_then(Item::as_str).map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    let ips = ip_tables(&mut model)?;
    let mut changed = false;
    let mut kept = ArrayOfTables::new();
    let mut present = Vec::new();
    for table in ips.iter() {
        let address = table
            .get("address")
            .and_then(Item::as_str)
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .map(|a| a.to_canonical());
        let owner = table.get("node").and_then(Item::as_str).unwrap_or(node);
        let in_file = address.is_some_and(|a| host.iter().any(|(h, _)| *h == a));
        match address {
            Some(address) if in_file && owner != node => {
                return Err(ModelError::IpOfAnotherNode {
                    address: address.to_string(),
                    owner: owner.to_string(),
                });
            }
            Some(address) if owner == node && !in_file => {
                let _ = address;
                changed = true;
                continue;
            }
            Some(address) => present.push(address),
            None => {}
        }
        kept.push(table.clone());
    }
    for (address, entry) in &host {
        if present.contains(address) {
            continue;
        }
        let mut table = entry.clone();
        table.insert("node", value(node));
        let pool_known = table
            .get("pool")
            .and_then(Item::as_str)
            .is_none_or(|p| p == crate::registry::DEFAULT_POOL || pools.iter().any(|n| n == p));
        if !pool_known {
            table.remove("pool");
        }
        kept.push(table);
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    model.insert("ip", Item::ArrayOfTables(kept));
    Ok(Some(model.to_string()))
}

/// The `[[ip]]` array of a document (created empty when absent).
fn ip_tables(document: &mut DocumentMut) -> Result<&mut ArrayOfTables, ModelError> {
    if !document.contains_key("ip") {
        document.insert("ip", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    document
        .get_mut("ip")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| ModelError::Shape("`ip` must be a list of [[ip]] tables".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: &str = r#"
[smtp]
listen = ["127.0.0.1:2525"]
hostname = "a.example.test"

[[pool]]
name = "transactional"

[[ip]]
address = "127.0.0.2"
pool = "transactional"

[[configuration_set]]
name = "reset"
sending_pool = "transactional"
"#;

    #[test]
    fn the_model_holds_the_fleet_tables_with_their_node() {
        let model = model_of(SINGLE, "a").unwrap();
        assert!(model.contains("name = \"transactional\""), "{model}");
        assert!(model.contains("node = \"a\""), "{model}");
        assert!(model.contains("name = \"reset\""), "{model}");
        assert!(!model.contains("[smtp]"), "{model}");
    }

    #[test]
    fn the_effective_config_is_the_host_file_with_the_model_tables() {
        let model = model_of(SINGLE, "a").unwrap();
        let host_b = "[smtp]\nlisten = [\"127.0.0.1:2625\"]\nhostname = \"b\"\n\n[[ip]]\naddress = \"127.0.0.3\"\n\n[[pool]]\nname = \"stale\"\n";
        let effective = effective(host_b, &model).unwrap();
        let document: DocumentMut = effective.parse().unwrap();
        assert_eq!(document["smtp"]["hostname"].as_str(), Some("b"));
        let pools = document["pool"].as_array_of_tables().unwrap();
        assert_eq!(pools.len(), 1, "{effective}");
        let ips = document["ip"].as_array_of_tables().unwrap();
        assert_eq!(
            ips.len(),
            1,
            "the file's own list is not in the effective config"
        );
        assert_eq!(ips.get(0).unwrap()["address"].as_str(), Some("127.0.0.2"));
    }

    #[test]
    fn a_node_claims_its_addresses_and_cannot_take_another_nodes() {
        let model = model_of(SINGLE, "a").unwrap();
        let host_b = "[[ip]]\naddress = \"127.0.0.3\"\npool = \"transactional\"\n\n[[ip]]\naddress = \"127.0.0.4\"\npool = \"unknown\"\n";
        let claimed = claim(host_b, &model, "b").unwrap().unwrap();
        let document: DocumentMut = claimed.parse().unwrap();
        let ips = document["ip"].as_array_of_tables().unwrap();
        let of = |address: &str| {
            ips.iter()
                .find(|t| t["address"].as_str() == Some(address))
                .unwrap()
                .clone()
        };
        assert_eq!(of("127.0.0.3")["node"].as_str(), Some("b"));
        assert_eq!(of("127.0.0.3")["pool"].as_str(), Some("transactional"));
        assert!(
            of("127.0.0.4").get("pool").is_none(),
            "an unknown pool is dropped"
        );
        assert_eq!(of("127.0.0.2")["node"].as_str(), Some("a"));
        assert_eq!(claim(host_b, &claimed, "b").unwrap(), None, "nothing new");

        let thief = "[[ip]]\naddress = \"127.0.0.2\"\n";
        assert_eq!(
            claim(thief, &claimed, "c"),
            Err(ModelError::IpOfAnotherNode {
                address: "127.0.0.2".into(),
                owner: "a".into()
            })
        );
        let without_4 = "[[ip]]\naddress = \"127.0.0.3\"\n";
        let dropped = claim(without_4, &claimed, "b").unwrap().unwrap();
        assert!(!dropped.contains("127.0.0.4"), "{dropped}");
        assert!(dropped.contains("127.0.0.2"), "{dropped}");
    }
}
