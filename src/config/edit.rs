//! Changing the config file the way an operator would: with `toml_edit`, so comments, order and
//! every key the change does not touch stay as they were.
//!
//! A change is applied to the document, the result is validated exactly like a file read at
//! start-up, and only then written: to a temporary file, fsynced, renamed over the original,
//! and the folder fsynced. A change that does not validate writes nothing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Config, ConfigErrors};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read or write the config file: {0}")]
    Io(#[from] io::Error),
    #[error("the config file is not valid TOML: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    NotFound(String),
}

/// The config file as an editable document.
pub struct ConfigDocument {
    document: DocumentMut,
}

fn array<'a>(document: &'a mut DocumentMut, key: &str) -> &'a mut ArrayOfTables {
    if !document.contains_key(key) {
        document.insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match document.get_mut(key) {
        Some(Item::ArrayOfTables(tables)) => tables,
        _ => unreachable!("inserted above or already an array of tables"),
    }
}

fn position(document: &DocumentMut, key: &str, matches: impl Fn(&Table) -> bool) -> Option<usize> {
    match document.get(key) {
        Some(Item::ArrayOfTables(tables)) => tables.iter().position(matches),
        _ => None,
    }
}

fn str_key<'a>(table: &'a Table, key: &str) -> Option<&'a str> {
    table.get(key).and_then(Item::as_str)
}

impl ConfigDocument {
    pub fn read(path: &Path) -> Result<Self, EditError> {
        let text = fs::read_to_string(path)?;
        let document = text
            .parse::<DocumentMut>()
            .map_err(|e| EditError::Syntax(e.to_string()))?;
        Ok(Self { document })
    }

    pub fn add_pool(&mut self, name: &str) {
        let mut table = Table::new();
        table.insert("name", value(name));
        array(&mut self.document, "pool").push(table);
    }

    pub fn remove_pool(&mut self, name: &str) -> Result<(), EditError> {
        let at = position(&self.document, "pool", |t| str_key(t, "name") == Some(name))
            .ok_or_else(|| EditError::NotFound(format!("pool {name} is not in the config file")))?;
        array(&mut self.document, "pool").remove(at);
        Ok(())
    }

    fn ip_position(&self, address: IpAddr) -> Option<usize> {
        position(&self.document, "ip", |t| {
            str_key(t, "address").and_then(|a| a.parse::<IpAddr>().ok()) == Some(address)
        })
    }

    pub fn add_ip(
        &mut self,
        address: IpAddr,
        pool: Option<&str>,
        ehlo_hostname: Option<&str>,
        weight: Option<u32>,
    ) {
        let mut table = Table::new();
        table.insert("address", value(address.to_string()));
        if let Some(pool) = pool {
            table.insert("pool", value(pool));
        }
        if let Some(name) = ehlo_hostname {
            table.insert("ehlo_hostname", value(name));
        }
        if let Some(weight) = weight {
            table.insert("weight", value(i64::from(weight)));
        }
        array(&mut self.document, "ip").push(table);
    }

    pub fn remove_ip(&mut self, address: IpAddr) -> Result<(), EditError> {
        let at = self.ip_position(address).ok_or_else(|| {
            EditError::NotFound(format!("IP {address} is not in the config file"))
        })?;
        array(&mut self.document, "ip").remove(at);
        Ok(())
    }

    /// Moves an IP; `None` puts it in `ses-default-dedicated-pool` (no `pool` key).
    pub fn set_ip_pool(&mut self, address: IpAddr, pool: Option<&str>) -> Result<(), EditError> {
        let at = self.ip_position(address).ok_or_else(|| {
            EditError::NotFound(format!("IP {address} is not in the config file"))
        })?;
        let table = array(&mut self.document, "ip")
            .get_mut(at)
            .ok_or_else(|| EditError::NotFound(format!("IP {address}")))?;
        match pool {
            Some(pool) => {
                table.insert("pool", value(pool));
            }
            None => {
                table.remove("pool");
            }
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) one key of an `[[ip]]` entry.
    pub fn set_ip_key(
        &mut self,
        address: IpAddr,
        key: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        let at = self.ip_position(address).ok_or_else(|| {
            EditError::NotFound(format!("IP {address} is not in the config file"))
        })?;
        let table = array(&mut self.document, "ip")
            .get_mut(at)
            .ok_or_else(|| EditError::NotFound(format!("IP {address}")))?;
        match new {
            Some(new) => {
                table.insert(key, Item::Value(new));
            }
            None => {
                table.remove(key);
            }
        }
        Ok(())
    }

    /// `[warmup] enabled`.
    pub fn set_warmup_enabled(&mut self, enabled: bool) {
        if !self.document.contains_table("warmup") {
            self.document.insert("warmup", Item::Table(Table::new()));
        }
        if let Some(table) = self.document.get_mut("warmup").and_then(Item::as_table_mut) {
            table.insert("enabled", value(enabled));
        }
    }

    pub fn add_configuration_set(&mut self, name: &str) {
        let mut table = Table::new();
        table.insert("name", value(name));
        array(&mut self.document, "configuration_set").push(table);
    }

    pub fn remove_configuration_set(&mut self, name: &str) -> Result<(), EditError> {
        let at = position(&self.document, "configuration_set", |t| {
            str_key(t, "name") == Some(name)
        })
        .ok_or_else(|| {
            EditError::NotFound(format!(
                "configuration set {name} is not in the config file"
            ))
        })?;
        array(&mut self.document, "configuration_set").remove(at);
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) one key of a configuration set.
    pub fn set_configuration_set_key(
        &mut self,
        name: &str,
        key: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        let at = position(&self.document, "configuration_set", |t| {
            str_key(t, "name") == Some(name)
        })
        .ok_or_else(|| {
            EditError::NotFound(format!(
                "configuration set {name} is not in the config file"
            ))
        })?;
        let table = array(&mut self.document, "configuration_set")
            .get_mut(at)
            .ok_or_else(|| EditError::NotFound(format!("configuration set {name}")))?;
        match new {
            Some(new) => {
                table.insert(key, Item::Value(new));
            }
            None => {
                table.remove(key);
            }
        }
        Ok(())
    }

    /// Validates the changed document as a config file at `path` and, if it is valid, writes it
    /// atomically. Returns the new config.
    pub fn save(&self, path: &Path) -> Result<Config, EditError> {
        let text = self.document.to_string();
        let config = super::parse(path, &text).map_err(EditError::Invalid)?;
        write_atomically(path, text.as_bytes())?;
        Ok(config)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    if let Ok(metadata) = fs::metadata(path) {
        let _ = fs::set_permissions(&tmp, metadata.permissions());
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# operator's header comment\n[smtp]\nlisten = [\"127.0.0.1:2525\"] # keep me\nhostname = \"relay.test\"\n\n# the marketing pool\n[[pool]]\nname = \"marketing\"\n\n[[ip]]\naddress = \"127.0.0.2\" # first IP\npool = \"marketing\"\nweight = 3\n";

    #[test]
    fn edits_keep_comments_and_untouched_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, TEXT).unwrap();
        let mut document = ConfigDocument::read(&path).unwrap();
        document.add_pool("transactional");
        document
            .set_ip_pool("127.0.0.2".parse().unwrap(), Some("transactional"))
            .unwrap();
        document.add_ip("127.0.0.3".parse().unwrap(), None, Some("mta-3.test"), None);
        document.add_configuration_set("reset");
        document
            .set_configuration_set_key("reset", "sending_pool", Some("transactional".into()))
            .unwrap();
        let config = document.save(&path).unwrap();
        assert_eq!(
            config.registry.pool_for(Some("reset")).unwrap(),
            "transactional"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for kept in [
            "# operator's header comment",
            "# keep me",
            "# the marketing pool",
            "# first IP",
            "weight = 3",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
    }

    #[test]
    fn an_invalid_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, TEXT).unwrap();
        let mut document = ConfigDocument::read(&path).unwrap();
        document.remove_pool("marketing").unwrap(); // the IP still names it
        assert!(matches!(document.save(&path), Err(EditError::Invalid(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEXT);
        assert!(matches!(
            document.remove_pool("ghost"),
            Err(EditError::NotFound(_))
        ));
    }
}
