//! `cargo xtask cycles`: the import graph between the files of
//! profiler/src, and a check that it has no cycle.
//!
//! A file's module is its path (`enrich/process.rs` is `enrich::process`,
//! `noise/mod.rs` is `noise`). It depends on every module that a `use`
//! or a path in its code names through `crate::`, `super::`, `self::` or a
//! child module's name, resolved to the longest module prefix that is a file. `mod` declarations
//! are not dependencies.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use syn::visit::Visit;

/// Module path (`["noise", "run"]`) → its file.
type Modules = BTreeMap<Vec<String>, PathBuf>;

/// Every `.rs` file under `src`, by module path.
fn modules(src: &Path) -> anyhow::Result<Modules> {
    let mut out = Modules::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?.with_extension("");
            let mut module: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    Ok(out)
}

/// The paths a file names, each with the inline modules (`mod tests { … }`)
/// it is named in, relative to which `self` and `super` resolve.
#[derive(Default)]
struct Paths {
    found: Vec<(Vec<String>, Vec<String>)>,
    inline: Vec<String>,
}

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push(prefix.iter().cloned().chain([n.ident.to_string()]).collect()),
            syn::UseTree::Rename(r) => self.push(prefix.iter().cloned().chain([r.ident.to_string()]).collect()),
            syn::UseTree::Glob(_) => self.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn push(&mut self, path: Vec<String>) {
        if path.len() > 1 || matches!(path.first().map(String::as_str), Some("crate" | "super" | "self")) {
            self.found.push((self.inline.clone(), path));
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.inline.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.inline.pop();
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// `path` as named in `from`, made absolute and cut to the longest prefix
/// that is a file's module.
fn resolve(modules: &Modules, from: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut abs: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self" | "super") => {
            abs = from.to_vec();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "self" => {}
                    "super" => {
                        abs.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        // A path that starts with a child module's name (`use histograms::Kind` in latency/mod.rs).
        Some(first) if modules.contains_key(&from.iter().cloned().chain([first.to_owned()]).collect::<Vec<_>>()) => {
            abs = from.to_vec();
        }
        _ => return None,
    }
    abs.extend(rest.iter().cloned());
    (0..=abs.len()).rev().map(|n| abs[..n].to_vec()).find(|m| modules.contains_key(m))
}

/// The import graph: module → modules it names.
fn graph(src: &Path) -> anyhow::Result<BTreeMap<Vec<String>, BTreeSet<Vec<String>>>> {
    let modules = modules(src)?;
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let to: BTreeSet<_> = paths
            .found
            .iter()
            .filter_map(|(inline, p)| {
                let from: Vec<String> = module.iter().chain(inline).cloned().collect();
                resolve(&modules, &from, p)
            })
            .filter(|m| m != module && !m.is_empty())
            .collect();
        edges.insert(module.clone(), to);
    }
    Ok(edges)
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<BTreeSet<String>> {
    let names: Vec<&Vec<String>> = edges.keys().collect();
    let index_of: BTreeMap<&Vec<String>, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adj: Vec<Vec<usize>> =
        names.iter().map(|n| edges[*n].iter().filter_map(|m| index_of.get(m).copied()).collect()).collect();
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn connect(v: usize, adj: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &adj[v] {
            match s.index[w] {
                None => {
                    connect(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(i) if s.on_stack[w] => s.low[v] = s.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let n = names.len();
    let mut s = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            connect(v, &adj, &mut s);
        }
    }
    s.out.into_iter().map(|c| c.into_iter().map(|i| names[i].join("::")).collect()).collect()
}

/// Print the cycles of profiler/src (with `edges`, the imports inside
/// each); fail if there is one.
pub fn check(root: &Path, edges: bool) -> anyhow::Result<()> {
    let src = root.join("profiler/src");
    let files = modules(&src)?.len();
    let graph = graph(&src)?;
    let found = cycles(&graph);
    if found.is_empty() {
        println!("no import cycle among the {files} files of profiler/src");
        return Ok(());
    }
    for c in &found {
        let members: Vec<_> = c.iter().map(String::as_str).collect();
        println!("cycle through {} of {files} files: {}", c.len(), members.join(" "));
        for (from, to) in graph.iter().filter(|_| edges) {
            let from = from.join("::");
            if c.contains(&from) {
                let inside: Vec<_> = to.iter().map(|m| m.join("::")).filter(|m| c.contains(m)).collect();
                println!("  {from} -> {}", inside.join(" "));
            }
        }
    }
    bail!(
        "import cycle(s) among the files of profiler/src ({}): data flows one way; `cargo xtask cycles --edges` shows the imports",
        found.iter().map(|c| c.iter().map(String::as_str).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("; ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Vec<String> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split("::").map(str::to_owned).collect()
    }

    #[test]
    fn paths_resolve_to_the_longest_file_module() {
        let modules: Modules = ["", "noise", "noise::run", "bpf"].iter().map(|s| (m(s), PathBuf::from(*s))).collect();
        let r = |from: &str, path: &str| resolve(&modules, &m(from), &m(path)).map(|v| v.join("::"));
        assert_eq!(r("noise::run", "super::collect"), Some("noise".into()));
        assert_eq!(r("noise::run", "crate::bpf::Loaded"), Some("bpf".into()));
        assert_eq!(r("noise", "self::run::Measured"), Some("noise::run".into()));
        assert_eq!(r("bpf", "crate::Error"), Some("".into()));
        assert_eq!(r("bpf", "std::fs"), None);
        assert_eq!(r("noise", "run::Measured"), Some("noise::run".into()), "a child module by its name");
        assert_eq!(r("noise::run::tests", "super::Measured"), Some("noise::run".into()), "from an inline module");
    }

    #[test]
    fn a_cycle_is_found_and_a_chain_is_not() {
        let g: BTreeMap<_, BTreeSet<_>> = [
            (m("a"), [m("b")].into()),
            (m("b"), [m("c")].into()),
            (m("c"), [m("a")].into()),
            (m("d"), [m("a")].into()),
        ]
        .into();
        let found = cycles(&g);
        assert_eq!(found, vec![["a", "b", "c"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()]);
    }
}
