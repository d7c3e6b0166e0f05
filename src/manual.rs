//! Man pages from the command-line definition: `poolrelay(8)` and one page per subcommand
//! (`poolrelay-serve(8)`, `poolrelay-cluster-status(8)`, ...), so they never drift from `--help`.

use std::io;
use std::path::{Path, PathBuf};

/// Writes every page into `dir` (created if needed); returns the files written.
pub fn write_pages(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_page(command.name("poolrelay"), "poolrelay", dir, &mut written)?;
    Ok(written)
}

/// The page of `command` (named `name`), then those of its subcommands.
fn write_page(
    command: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let command = command
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .render(&mut page)?;
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_page(
            sub.clone(),
            &format!("{name}-{}", sub.get_name()),
            dir,
            written,
        )?;
    }
    Ok(())
}
