//! Man pages from the command-line definition: `poolrelay(8)` and one page per subcommand
//! (`poolrelay-serve(8)`, `poolrelay-cluster-status(8)`, ...), so they never drift from `--help`;
//! and `poolrelay.toml(5)`, built around the documented example config of the source tree.

use std::io;
use std::path::{Path, PathBuf};

/// Writes every page into `dir` (created if needed); returns the files written.
pub fn write_pages(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_page(command.name("poolrelay"), "poolrelay", dir, &mut written)?;
    let path = dir.join("poolrelay.toml.5");
    std::fs::write(&path, config_page())?;
    written.push(path);
    Ok(written)
}

/// The example config every section is documented in.
const EXAMPLE: &str = include_str!("../config/poolrelay.toml");

/// `poolrelay.toml(5)`: what the file is, where it lives, and the documented example.
pub fn config_page() -> String {
    let mut page = format!(
        ".TH poolrelay.toml 5 \"\" \"poolrelay {}\"\n",
        env!("CARGO_PKG_VERSION")
    );
    page.push_str(
        ".SH NAME\npoolrelay.toml \\- configuration of the poolrelay SMTP relay\n\
         .SH DESCRIPTION\n\
         A TOML file. [smtp] sets the listeners; [[pool]], [[ip]] and [[configuration_set]] \
         make the dedicated IP pools a message's X\\-SES\\-CONFIGURATION\\-SET header \
         selects; the other sections set the spool, the queue, warm\\-up, health, shaping, \
         routes, DKIM identities, the feedback loop, the SESv2 API, the console, metrics and \
         fleet mode. Relative paths are relative to the file's folder.\n\
         .PP\n\
         Check a file with \\fBpoolrelay check\\-config\\fR; a running relay re\\-reads it on \
         SIGHUP (\\fBsystemctl reload poolrelay\\fR or \\fBpoolrelay reload\\fR), and changes \
         made through the admin API are written back into it.\n\
         .SH EXAMPLE\n\
         The example config of the source tree, with every section explained:\n\
         .PP\n.nf\n",
    );
    for line in EXAMPLE.lines() {
        let escaped = line.replace('\\', "\\e");
        // A line starting with '.' or '\'' would be read as a request.
        if escaped.starts_with('.') || escaped.starts_with('\'') {
            page.push_str("\\&");
        }
        page.push_str(&escaped);
        page.push('\n');
    }
    page.push_str(
        ".fi\n.SH FILES\n/etc/poolrelay/poolrelay.toml (the Debian package)\n\
         .SH SEE ALSO\npoolrelay(8), poolrelay\\-check\\-config(8), poolrelay\\-serve(8)\n",
    );
    page
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
