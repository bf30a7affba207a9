//! The crate's import graph, checked: every top-level module sits in a layer and uses only
//! modules of lower layers (or of its own, without a circle), so the code reads top-down:
//! the binary and tools, then the server that wires everything, the drivers (APIs and
//! background tasks), the service core, the store and the sandbox, and the domain below.
//! The drivers reach storage only through the service core.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers from the top; a module may use the modules of the layers after its own.
const LAYERS: &[&[&str]] = &[
    &["bench", "chaos", "fuzz"],
    &["child_server"],
    &["server"],
    &["api", "tasks"],
    &["service"],
    &["backup"],
    &["store", "runtime"],
    &[
        "audit",
        "auth",
        "client",
        "clock",
        "examples",
        "grants",
        "handler",
        "job",
        "kv",
        "local_postgres",
        "manifest",
        "metrics",
        "quota",
        "rate_limit",
        "retention",
        "secrets",
        "signals",
        "tls",
        "trigger",
    ],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Top-level module -> the top-level modules its code names as `crate::<module>`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&root).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "lib" || name == "main" || name == "layers" {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).expect("source");
            for line in text.lines() {
                // Doc links and comments name modules without depending on them.
                let code = line.split("//").next().unwrap_or("");
                for (at, _) in code.match_indices("crate::") {
                    let used: String = code[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used != name {
                        uses.insert(used);
                    }
                }
            }
        }
        graph.insert(name, uses);
    }
    graph
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<_> = import_graph()
        .into_keys()
        .filter(|module| layer_of(module).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "place these modules in LAYERS: {unplaced:?}"
    );
}

#[test]
fn no_module_uses_a_module_of_a_higher_layer() {
    let mut upward = Vec::new();
    for (module, uses) in import_graph() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for used in uses {
            if layer_of(&used).is_some_and(|layer| layer < own) {
                upward.push(format!("{module} -> {used}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:?}");
}

#[test]
fn the_modules_of_one_layer_use_each_other_without_a_circle() {
    let graph = import_graph();
    // Repeatedly take away modules that use no module still left; a circle never goes.
    let mut left: BTreeMap<_, BTreeSet<_>> = graph
        .iter()
        .map(|(module, uses)| {
            let known = uses.iter().filter(|u| graph.contains_key(*u)).cloned();
            (module.clone(), known.collect())
        })
        .collect();
    loop {
        let free: Vec<_> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(module, _)| module.clone())
            .collect();
        if free.is_empty() {
            break;
        }
        for module in free {
            left.remove(&module);
        }
    }
    assert!(left.is_empty(), "modules in an import circle: {left:?}");
}

#[test]
fn the_apis_and_tasks_reach_storage_only_through_the_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ports = [
        "JobStore",
        "JobQueue",
        "JobQueries",
        "TriggerStore",
        "KeyValueStore",
        "Catalog",
    ];
    let mut reaching = Vec::new();
    for driver in ["api", "tasks"] {
        for file in rust_files(&root.join(driver)) {
            let text = std::fs::read_to_string(&file).expect("source");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for port in ports {
                    if code
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|word| word == port)
                    {
                        reaching.push(format!("{}: {port}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        reaching.is_empty(),
        "drivers naming a store port: {reaching:?}"
    );
}
