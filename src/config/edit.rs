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

/// Which `[[pool]]`, `[[ip]]` or `[[configuration_set]]` entry an edit is about.
#[derive(Clone, Copy)]
enum Entry<'a> {
    /// By its `name`.
    Named(&'a str),
    /// An `[[ip]]` by its `address` (compared as addresses, so any spelling matches, an
    /// IPv4-mapped IPv6 one included).
    Address(IpAddr),
    /// An `[[identity]]` by its `name`, compared in its normal spelling.
    Identity(&'a str),
}

impl Entry<'_> {
    fn matches(self, table: &Table) -> bool {
        match self {
            Self::Named(name) => table.get("name").and_then(Item::as_str) == Some(name),
            Self::Address(address) => {
                table
                    .get("address")
                    .and_then(Item::as_str)
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .map(|a| a.to_canonical())
                    == Some(address.to_canonical())
            }
            Self::Identity(name) => {
                table
                    .get("name")
                    .and_then(Item::as_str)
                    .map(crate::identity::normalize_name)
                    == Some(crate::identity::normalize_name(name))
            }
        }
    }

    fn describe(self, key: &str) -> String {
        match self {
            Self::Named(name) | Self::Identity(name) => {
                format!("{key} {name} is not in the config file")
            }
            Self::Address(address) => format!("{key} {address} is not in the config file"),
        }
    }
}

impl ConfigDocument {
    pub fn read(path: &Path) -> Result<Self, EditError> {
        Self::parse(&fs::read_to_string(path)?)
    }

    /// A document from config text.
    pub fn parse(text: &str) -> Result<Self, EditError> {
        let document = text
            .parse::<DocumentMut>()
            .map_err(|e| EditError::Syntax(e.to_string()))?;
        Ok(Self { document })
    }

    /// The array of tables `key` (created when absent). The file may have been edited by hand
    /// since it was loaded, so anything else under that key is an error, not an assumption.
    fn tables(&mut self, key: &str) -> Result<&mut ArrayOfTables, EditError> {
        if !self.document.contains_key(key) {
            self.document
                .insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
        }
        match self.document.get_mut(key) {
            Some(Item::ArrayOfTables(tables)) => Ok(tables),
            _ => Err(EditError::Syntax(format!(
                "`{key}` in the config file is not a list of [[{key}]] tables"
            ))),
        }
    }

    fn entry(
        &mut self,
        key: &str,
        entry: Entry<'_>,
    ) -> Result<(usize, &mut ArrayOfTables), EditError> {
        let tables = self.tables(key)?;
        let at = tables
            .iter()
            .position(|table| entry.matches(table))
            .ok_or_else(|| EditError::NotFound(entry.describe(key)))?;
        Ok((at, tables))
    }

    fn push(
        &mut self,
        key: &str,
        fields: &[(&str, Option<toml_edit::Value>)],
    ) -> Result<(), EditError> {
        let mut table = Table::new();
        for (field, content) in fields {
            if let Some(content) = content {
                table.insert(field, Item::Value(content.clone()));
            }
        }
        self.tables(key)?.push(table);
        Ok(())
    }

    fn remove(&mut self, key: &str, entry: Entry<'_>) -> Result<(), EditError> {
        let (at, tables) = self.entry(key, entry)?;
        tables.remove(at);
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) one field of an entry.
    fn set(
        &mut self,
        key: &str,
        entry: Entry<'_>,
        field: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        let (at, tables) = self.entry(key, entry)?;
        let table = tables
            .get_mut(at)
            .ok_or_else(|| EditError::NotFound(entry.describe(key)))?;
        match new {
            Some(new) => {
                table.insert(field, Item::Value(new));
            }
            None => {
                table.remove(field);
            }
        }
        Ok(())
    }

    pub fn add_pool(&mut self, name: &str) -> Result<(), EditError> {
        self.push("pool", &[("name", Some(name.into()))])
    }

    /// Sets (`Some`) or removes (`None`) one field of a `[[pool]]`.
    pub fn set_pool_key(
        &mut self,
        name: &str,
        field: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        self.set("pool", Entry::Named(name), field, new)
    }

    pub fn remove_pool(&mut self, name: &str) -> Result<(), EditError> {
        self.remove("pool", Entry::Named(name))
    }

    pub fn add_ip(
        &mut self,
        address: IpAddr,
        pool: Option<&str>,
        ehlo_hostname: Option<&str>,
        weight: Option<u32>,
    ) -> Result<(), EditError> {
        self.push(
            "ip",
            &[
                ("address", Some(address.to_string().into())),
                ("pool", pool.map(Into::into)),
                ("ehlo_hostname", ehlo_hostname.map(Into::into)),
                ("weight", weight.map(|w| i64::from(w).into())),
            ],
        )
    }

    pub fn remove_ip(&mut self, address: IpAddr) -> Result<(), EditError> {
        self.remove("ip", Entry::Address(address))
    }

    /// Sets (`Some`) or removes (`None`) one field of an `[[ip]]` entry.
    pub fn set_ip_key(
        &mut self,
        address: IpAddr,
        field: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        self.set("ip", Entry::Address(address), field, new)
    }

    /// Moves an IP; `None` puts it in `ses-default-dedicated-pool` (no `pool` key).
    pub fn set_ip_pool(&mut self, address: IpAddr, pool: Option<&str>) -> Result<(), EditError> {
        self.set_ip_key(address, "pool", pool.map(Into::into))
    }

    /// `[warmup] enabled`.
    pub fn set_warmup_enabled(&mut self, enabled: bool) -> Result<(), EditError> {
        self.set_section_key("warmup", "enabled", enabled.into())
    }

    /// One key of a top-level table (`[suppression] reasons`), made when missing.
    pub fn set_section_key(
        &mut self,
        section: &str,
        key: &str,
        new: toml_edit::Value,
    ) -> Result<(), EditError> {
        if !self.document.contains_key(section) {
            self.document.insert(section, Item::Table(Table::new()));
        }
        let table = self
            .document
            .get_mut(section)
            .and_then(Item::as_table_mut)
            .ok_or_else(|| {
                EditError::Syntax(format!(
                    "`{section}` in the config file is not a [{section}] table"
                ))
            })?;
        table.insert(key, value(new));
        Ok(())
    }

    pub fn add_configuration_set(&mut self, name: &str) -> Result<(), EditError> {
        self.push("configuration_set", &[("name", Some(name.into()))])
    }

    pub fn remove_configuration_set(&mut self, name: &str) -> Result<(), EditError> {
        self.remove("configuration_set", Entry::Named(name))
    }

    /// Sets (`Some`) or removes (`None`) one field of a configuration set.
    pub fn set_configuration_set_key(
        &mut self,
        name: &str,
        field: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        self.set("configuration_set", Entry::Named(name), field, new)
    }

    /// Adds an `[[identity]]` with `fields` (those that are `Some`).
    pub fn add_identity(
        &mut self,
        name: &str,
        fields: &[(&str, Option<toml_edit::Value>)],
    ) -> Result<(), EditError> {
        let mut all = vec![("name", Some(name.into()))];
        all.extend_from_slice(fields);
        self.push("identity", &all)
    }

    pub fn remove_identity(&mut self, name: &str) -> Result<(), EditError> {
        self.remove("identity", Entry::Identity(name))
    }

    /// Sets (`Some`) or removes (`None`) one field of an identity.
    pub fn set_identity_key(
        &mut self,
        name: &str,
        field: &str,
        new: Option<toml_edit::Value>,
    ) -> Result<(), EditError> {
        self.set("identity", Entry::Identity(name), field, new)
    }

    /// Validates the changed document as a config file at `path` and, if it is valid, writes it
    /// atomically. Returns the new config.
    /// Validates the document as the config at `path` and writes it there; returns the config
    /// and the text written.
    /// The document as text.
    pub fn text(&self) -> String {
        self.document.to_string()
    }

    pub fn save(&self, path: &Path) -> Result<(Config, String), EditError> {
        let text = self.document.to_string();
        let config = super::parse(path, &text).map_err(EditError::Invalid)?;
        write_atomically(path, text.as_bytes())?;
        Ok((config, text))
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
        document.add_pool("transactional").unwrap();
        document
            .set_ip_pool("127.0.0.2".parse().unwrap(), Some("transactional"))
            .unwrap();
        document
            .add_ip("127.0.0.3".parse().unwrap(), None, Some("mta-3.test"), None)
            .unwrap();
        document.add_configuration_set("reset").unwrap();
        document
            .set_configuration_set_key("reset", "sending_pool", Some("transactional".into()))
            .unwrap();
        let (config, written) = document.save(&path).unwrap();
        assert_eq!(
            written,
            std::fs::read_to_string(&path).unwrap(),
            "the text written is returned"
        );
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

    #[test]
    fn a_hand_edited_key_of_the_wrong_shape_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, "pool = \"not a table\"\nwarmup = 3\n").unwrap();
        let mut document = ConfigDocument::read(&path).unwrap();
        assert!(matches!(document.add_pool("x"), Err(EditError::Syntax(_))));
        assert!(matches!(
            document.set_warmup_enabled(false),
            Err(EditError::Syntax(_))
        ));
    }
}
