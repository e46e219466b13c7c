//! The module structure README's "Architecture" section describes: no import cycle between
//! top-level modules, and the leaves stay leaves.
//!
//! Reads `src/` as text: a module's imports are the `crate::<module>` paths in its files outside
//! comments and unit tests (a file's `#[cfg(test)]` part, `tests.rs`, `*_tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read src");
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the other top-level modules it imports.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("name")
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(top.as_str(), "main" | "lib") {
            continue;
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let imports = graph.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let module: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() && module != top {
                    imports.insert(module);
                }
            }
        }
    }
    graph
}

/// A cycle through `from`, if any (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    for capability in [
        "ha", "ingest", "store", "registry", "api", "webhooks", "http",
    ] {
        assert!(graph.contains_key(capability), "no module {capability}");
    }
    assert_eq!(cycle(&graph), None, "import graph: {graph:#?}");
}

#[test]
fn the_building_blocks_stay_leaves() {
    let graph = import_graph();
    let capabilities = [
        "ha", "ingest", "store", "registry", "api", "webhooks", "simulate", "app",
    ];
    for leaf in ["http", "health", "counters", "config", "task"] {
        let imports = &graph[leaf];
        let wrong: Vec<_> = imports
            .iter()
            .filter(|m| capabilities.contains(&m.as_str()))
            .collect();
        assert!(wrong.is_empty(), "{leaf} imports {wrong:?}");
    }
    // Home Assistant's client knows nothing of storage, the registry or the API
    for other in ["ingest", "store", "registry", "api", "webhooks"] {
        assert!(!graph["ha"].contains(other), "ha imports {other}");
    }
}

#[test]
fn a_planted_cycle_is_found() {
    let mut graph = import_graph();
    graph.entry("http".into()).or_default().insert("api".into());
    assert!(cycle(&graph).is_some());
}

/// The non-test code of the files under `src/<dir>`, one string per file.
fn code_under(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name != "tests.rs" && !name.ends_with("_tests.rs")
        })
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            (f, code)
        })
        .collect()
}

#[test]
fn each_storage_backend_uses_the_shared_vocabulary_not_the_other_backend() {
    for (backend, other) in [("embedded", "influx"), ("influx", "embedded")] {
        let files = code_under(&format!("store/{backend}"));
        assert!(!files.is_empty(), "no store/{backend}");
        for (file, code) in files {
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                assert!(
                    !line.contains(&format!("store::{other}")),
                    "{} imports store::{other}: {line}",
                    file.display()
                );
            }
        }
    }
}
