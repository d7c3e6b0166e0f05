//! The shape of the source tree, checked so it stays one a newcomer can learn: no import cycle
//! between files of `src/` or between its top-level modules, functions a reader can hold in their
//! head, files of a readable length.
//!
//! The imports are read from the source text: `use` declarations (each path resolved to the file
//! that defines the module it names) and `crate::`/`super::`/`self::` paths in code. Code after a
//! file's `#[cfg(test)]` is not counted: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Functions longer than this many lines (signature to closing brace) fail the check.
const MAX_FUNCTION_LINES: usize = 90;
/// Files longer than this fail the check.
const MAX_FILE_LINES: usize = 550;

/// `text` with comments and the insides of string and character literals blanked out (line
/// breaks kept), so braces and paths in them are not mistaken for code.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, part: &[u8]| {
        out.extend(part.iter().map(|&b| if b == b'\n' { b'\n' } else { b' ' }));
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        let after_ident = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            find(rest, b"*/").map_or(rest.len(), |at| at + 2)
        } else if !after_ident && raw_string_start(rest).is_some() {
            let (open, hashes) = raw_string_start(rest).unwrap_or((0, 0));
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            find(&rest[open..], &close).map_or(rest.len(), |at| open + at + close.len())
        } else if rest[0] == b'"' {
            string_end(rest)
        } else if rest[0] == b'\'' && rest.len() > 2 && rest[1] == b'\\' {
            rest[2..]
                .iter()
                .position(|&b| b == b'\'')
                .map_or(1, |at| at + 3)
        } else if rest[0] == b'\'' && rest.len() > 2 && rest[2] == b'\'' {
            3
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `r"`, `r#"`, `br"`...: the length of the opening and the number of `#`.
fn raw_string_start(rest: &[u8]) -> Option<(usize, usize)> {
    let after_b = if rest.first() == Some(&b'b') { 1 } else { 0 };
    if rest.get(after_b) != Some(&b'r') {
        return None;
    }
    let hashes = rest[after_b + 1..]
        .iter()
        .take_while(|&&b| b == b'#')
        .count();
    (rest.get(after_b + 1 + hashes) == Some(&b'"')).then_some((after_b + 2 + hashes, hashes))
}

/// The length of the ordinary string literal at the start of `rest`.
fn string_end(rest: &[u8]) -> usize {
    let mut j = 1;
    while j < rest.len() && rest[j] != b'"' {
        j += if rest[j] == b'\\' { 2 } else { 1 };
    }
    (j + 1).min(rest.len())
}

/// Every `.rs` file under `dir`, as its module path (`["outbound", "client"]`) and its text.
fn modules(root: &Path) -> BTreeMap<Vec<String>, (PathBuf, String)> {
    let mut found = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)
            .expect("src is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("under src");
                let mut parts: Vec<String> = relative
                    .with_extension("")
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                let text = std::fs::read_to_string(&path).expect("readable source");
                found.insert(parts, (path, text));
            }
        }
    }
    found
}

/// The paths a `use` tree names: `a::{b, c::d as e}` gives `a::b` and `a::c::d`.
fn expand_use(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in tree.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            items.push(std::mem::take(&mut item));
        } else {
            item.push(c);
        }
    }
    items.push(item);
    for item in items {
        let item = item.trim();
        if let Some(open) = item.find('{') {
            let head = item[..open].trim_end_matches(':');
            let inner = item[open + 1..].trim_end().trim_end_matches('}');
            let mut next = prefix.to_vec();
            next.extend(segments(head));
            expand_use(&next, inner, out);
        } else if !item.is_empty() {
            let name = item.split(" as ").next().unwrap_or_default();
            let mut path = prefix.to_vec();
            path.extend(segments(name));
            out.push(path);
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every path that `code` refers to a module by.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        expand_use(&[], &rest[..end], &mut paths);
    }
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            from = start + anchor.len();
            let before = code[..start].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            let text = &code[start..end];
            // `super::{a, b}` in a `use`: the names are in the braces, read above.
            if !text.ends_with("::") {
                paths.push(segments(text));
            }
        }
    }
    paths
}

/// The file (module path) that defines what `path`, written in module `current`, names.
fn resolve(
    path: &[String],
    current: &[String],
    known: &BTreeMap<Vec<String>, (PathBuf, String)>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let (mut full, rest): (Vec<String>, &[String]) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (current.to_vec(), &path[1..]),
        "super" => {
            let mut base = current.to_vec();
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        child => {
            let mut candidate = current.to_vec();
            candidate.push(child.to_string());
            if !known.contains_key(&candidate) {
                return None;
            }
            (current.to_vec(), path)
        }
    };
    full.extend(rest.iter().cloned());
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|prefix| known.contains_key(prefix))
}

/// The import graph: module → modules it uses (itself excluded).
fn import_graph(
    known: &BTreeMap<Vec<String>, (PathBuf, String)>,
) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut graph = BTreeMap::new();
    for (module, (_, text)) in known {
        let code = code_only(text);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let targets: BTreeSet<Vec<String>> = referenced_paths(code)
            .iter()
            .filter_map(|path| resolve(path, module, known))
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The strongly connected components with more than one member (Tarjan).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        found: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(node: &N, graph: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        let number = s.index.len();
        s.index.insert(node.clone(), number);
        s.low.insert(node.clone(), number);
        s.stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if !s.index.contains_key(next) {
                visit(next, graph, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node.clone(), low);
            } else if s.stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node.clone(), low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(member) = s.stack.pop() {
                let done = &member == node;
                component.push(member);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_between_files_or_top_level_modules() {
    let known = modules(&src());
    assert!(known.len() > 50, "the source tree was read");
    let graph = import_graph(&known);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges > 100, "imports were found: {edges}");
    let file_cycles = cycles(&graph);
    assert!(
        file_cycles.is_empty(),
        "files importing each other: {file_cycles:?}"
    );
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &graph {
        let Some(from) = from.first() else { continue };
        for to in targets.iter().filter_map(|t| t.first()) {
            if to != from {
                top.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    let module_cycles = cycles(&top);
    assert!(
        module_cycles.is_empty(),
        "top-level modules importing each other: {module_cycles:?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle_and_resolves_every_kind_of_path() {
    let file = |text: &str| (PathBuf::new(), text.to_string());
    let known: BTreeMap<Vec<String>, (PathBuf, String)> = [
        (vec![], file("mod a; mod b;")),
        (vec!["a".to_string()], file("mod inner; use inner::X;")),
        (
            vec!["a".to_string(), "inner".to_string()],
            file("use crate::b::{Y, z::W as V};\n// use crate::a::Q;\n"),
        ),
        (
            vec!["b".to_string()],
            file("use super::{a::inner};\nfn f() { let s = \"crate::a\"; super::a::inner::go(); }"),
        ),
    ]
    .into_iter()
    .collect();
    let graph = import_graph(&known);
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let inner = vec!["a".to_string(), "inner".to_string()];
    assert_eq!(graph[&a], BTreeSet::from([inner.clone()]));
    assert_eq!(graph[&inner], BTreeSet::from([b.clone()]));
    assert_eq!(graph[&b], BTreeSet::from([inner.clone()]));
    assert_eq!(cycles(&graph), vec![vec![b, inner]]);
}

/// Each function in `code` with its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("fn ") {
        let start = from + at;
        from = start + 3;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let name: String = code[start + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = code[start..].find(['{', ';']).map(|o| start + o) else {
            break;
        };
        if bytes[open] == b';' || name.is_empty() {
            continue;
        }
        let mut depth = 0;
        let mut close = open;
        for (offset, &b) in bytes[open..].iter().enumerate() {
            depth += i32::from(b == b'{') - i32::from(b == b'}');
            if depth == 0 {
                close = open + offset;
                break;
            }
        }
        let first = code[..start].matches('\n').count() + 1;
        let last = code[..close].matches('\n').count() + 1;
        found.push((name, first, last - first + 1));
    }
    found
}

#[test]
fn functions_and_files_stay_readable() {
    let mut too_long = Vec::new();
    for (path, text) in modules(&src()).values() {
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            too_long.push(format!("{}: {lines} lines", path.display()));
        }
        for (name, line, length) in functions(&code_only(text)) {
            if length > MAX_FUNCTION_LINES {
                too_long.push(format!(
                    "{}:{line} fn {name}: {length} lines",
                    path.display()
                ));
            }
        }
    }
    assert!(too_long.is_empty(), "split these: {too_long:#?}");
    let sample = "fn short() {\n    let s = \"}\";\n}\n\nfn long() {\n{\n}\n\n}\n";
    assert_eq!(
        functions(&code_only(sample)),
        vec![("short".to_string(), 1, 3), ("long".to_string(), 5, 5)]
    );
}
