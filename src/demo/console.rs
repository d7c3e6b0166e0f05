//! `poolrelay demo --console`: the demo's relay keeps running afterwards with the console open
//! on 127.0.0.1, signed in to with a password made for this run only.
//!
//! The console changes the config file, so the demo runs on a copy of the example config in its
//! temporary folder, with the demo's settings written into it (spool, events, a free loopback
//! port, every domain routed to the sink, no admin socket): the example config in the
//! repository is never touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

/// The console's one user: `admin`, with a random password for this run.
pub struct ConsoleLogin {
    pub username: &'static str,
    pub password: String,
}

fn array(items: &[&str]) -> Item {
    let mut array = Array::new();
    for item in items {
        array.push(*item);
    }
    value(array)
}

/// Writes `<folder>/poolrelay.toml`: the example config with the demo's settings and an
/// `[api]` listener on `api` with one `[[admin.user]]`. Returns its path and the login.
pub fn write_config(
    source: &Path,
    folder: &Path,
    sink: SocketAddr,
    api: SocketAddr,
) -> anyhow::Result<(PathBuf, ConsoleLogin)> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut document: DocumentMut = text.parse().context("the example config is not TOML")?;
    let spool = folder.join("spool");
    let events = folder.join("events.jsonl");
    document["spool"]["dir"] = value(spool.display().to_string());
    document["events"]["path"] = value(events.display().to_string());
    document["smtp"]["listen"] = array(&["127.0.0.1:0"]);
    if let Some(smtp) = document["smtp"].as_table_mut() {
        smtp.remove("tls_listen");
    }
    document.remove("metrics");
    let mut route = Table::new();
    route["domain"] = value("*");
    route["next_hop"] = value(sink.to_string());
    let mut routes = ArrayOfTables::new();
    routes.push(route);
    document["route"] = Item::ArrayOfTables(routes);
    let password_bytes: [u8; 12] = rand::random();
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(password_bytes);
    let hash = crate::password::hash(&password).map_err(|e| anyhow::anyhow!(e))?;
    let mut user = Table::new();
    user["username"] = value("admin");
    user["password_hash"] = value(hash);
    user["role"] = value("admin");
    let mut users = ArrayOfTables::new();
    users.push(user);
    let mut admin = Table::new();
    admin["user"] = Item::ArrayOfTables(users);
    document["admin"] = Item::Table(admin);
    let mut api_table = Table::new();
    api_table["listen"] = array(&[&api.to_string()]);
    document["api"] = Item::Table(api_table);
    let path = folder.join("poolrelay.toml");
    std::fs::create_dir_all(folder)?;
    std::fs::write(&path, document.to_string())?;
    Ok((
        path,
        ConsoleLogin {
            username: "admin",
            password,
        },
    ))
}
