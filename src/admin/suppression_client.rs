//! `poolrelay suppression list|add|remove|import`: the suppression list from the command line,
//! through the admin socket. `list` follows every page; `import` reads a CSV file of
//! `address,reason` lines, sends them in batches (each one durable commit), shows progress on a
//! terminal, and names every bad line it skips.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::client::call;
use super::suppression::MAX_BATCH;
use crate::ledger::suppression::normalize;
use crate::settings::suppression::SuppressionReason;

const BASE: &str = "/v2/email/suppression/addresses";

pub enum SuppressionAction {
    List { reason: Option<String> },
    Add { address: String, reason: String },
    Remove { address: String },
    Import { file: PathBuf },
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Sends one request and turns an API error into an `Err`.
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (status, reply) = call(socket, method, path, body).await?;
    if status != 200 {
        bail!("{}: {}", text(&reply["__type"]), text(&reply["message"]));
    }
    Ok(reply)
}

pub async fn run(
    socket: &Path,
    action: SuppressionAction,
    json_output: bool,
) -> anyhow::Result<()> {
    match action {
        SuppressionAction::List { reason } => list(socket, reason, json_output).await,
        SuppressionAction::Add { address, reason } => {
            let body = json!({"EmailAddress": address, "Reason": reason.to_ascii_uppercase()});
            request(socket, "PUT", BASE, Some(body)).await?;
            println!("{address} is on the suppression list");
            Ok(())
        }
        SuppressionAction::Remove { address } => {
            request(
                socket,
                "DELETE",
                &format!("{BASE}/{}", encode(&address)),
                None,
            )
            .await?;
            println!("{address} is off the suppression list");
            Ok(())
        }
        SuppressionAction::Import { file } => import(socket, &file).await,
    }
}

async fn list(socket: &Path, reason: Option<String>, json_output: bool) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let mut path = format!("{BASE}?PageSize=1000");
        if let Some(reason) = &reason {
            path.push_str(&format!(
                "&Reasons={}",
                encode(&reason.to_ascii_uppercase())
            ));
        }
        if let Some(token) = &token {
            path.push_str(&format!("&NextToken={}", encode(token)));
        }
        let page = request(socket, "GET", &path, None).await?;
        for entry in page["SuppressedDestinationSummaries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if json_output {
                all.push(entry.clone());
            } else {
                println!(
                    "{:<40} {:<10} {}",
                    text(&entry["EmailAddress"]),
                    text(&entry["Reason"]),
                    text(&entry["LastUpdateTime"])
                );
            }
        }
        match page["NextToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    if json_output {
        println!("{}", Value::Array(all));
    }
    Ok(())
}

/// One line of an import file, checked.
fn parse_line(record: &csv::StringRecord) -> Result<(String, SuppressionReason), String> {
    let address = record.get(0).unwrap_or("").trim();
    let reason = record.get(1).unwrap_or("").trim();
    let normalized =
        normalize(address).ok_or_else(|| format!("{address:?} is not an email address"))?;
    let reason = reason.to_ascii_uppercase().parse()?;
    Ok((normalized, reason))
}

async fn import(socket: &Path, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let lines = memchr::memchr_iter(b'\n', &text).count() as u64 + 1;
    let progress = indicatif::ProgressBar::new(lines);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} lines {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&text[..]);
    let (mut batch, mut imported, mut added, mut skipped) = (Vec::new(), 0u64, 0u64, 0u64);
    for (index, record) in reader.records().enumerate() {
        let number = index + 1;
        progress.inc(1);
        let checked = record.map_err(|e| e.to_string()).and_then(|r| {
            let header = number == 1 && r.get(0).is_some_and(|f| !f.contains('@'));
            if header {
                Err(String::new())
            } else {
                parse_line(&r)
            }
        });
        match checked {
            Ok((address, reason)) => {
                batch.push(json!({"EmailAddress": address, "Reason": reason.as_ses()}))
            }
            Err(why) if why.is_empty() => {}
            Err(why) => {
                skipped += 1;
                progress.suspend(|| eprintln!("{}: line {number}: {why}; skipped", file.display()));
            }
        }
        if batch.len() == MAX_BATCH {
            added += send_batch(socket, &mut batch, imported).await?;
            imported += MAX_BATCH as u64;
        }
    }
    let last = batch.len() as u64;
    if last > 0 {
        added += send_batch(socket, &mut batch, imported).await?;
        imported += last;
    }
    progress.finish_and_clear();
    println!("imported {imported} addresses ({added} new), skipped {skipped} bad lines");
    if skipped > 0 {
        bail!(
            "{skipped} lines of {} were skipped (see above); the others were imported",
            file.display()
        );
    }
    Ok(())
}

async fn send_batch(socket: &Path, batch: &mut Vec<Value>, before: u64) -> anyhow::Result<u64> {
    let body = json!({ "SuppressedDestinations": std::mem::take(batch) });
    let reply = request(socket, "POST", &format!("{BASE}/batch"), Some(body))
        .await
        .with_context(|| format!("import stopped; the first {before} addresses were imported"))?;
    Ok(reply["Added"].as_u64().unwrap_or(0))
}
