//! The dependency rules of ARCHITECTURE.md: the pipeline `link <- packeter <-
//! messaging <- rpc` is strict; stun and netiface depend on no weft crate;
//! discovery sits on netiface; participant is where discovery meets the
//! pipeline, traversal where stun does; only cli, benches and xtask see
//! everything. Dev- and build-dependencies obey the same rules: a test that
//! needs a crate from above belongs to the crate above.

use crate::metadata::{DepKind, Package};

use super::Violation;

/// Each layered crate and the crates it sits on directly. A crate may depend
/// on those and, transitively, on what they sit on; on nothing else of the
/// workspace.
pub(crate) const LAYERS: &[(&str, &[&str])] = &[
    ("weft-link", &[]),
    ("weft-packeter", &["weft-link"]),
    ("weft-messaging", &["weft-packeter"]),
    ("weft-rpc", &["weft-messaging"]),
    ("weft-stun", &[]),
    ("weft-netiface", &[]),
    ("weft-discovery", &["weft-netiface"]),
    ("weft-participant", &["weft-discovery", "weft-messaging"]),
    (
        "weft-traversal",
        &["weft-stun", "weft-netiface", "weft-messaging"],
    ),
];

/// The members that may depend on any other member.
pub(crate) const TOP: &[&str] = &["weft-cli", "weft-benches", "xtask"];

const RULE: &str = "layering";

pub(crate) fn check(packages: &[Package]) -> Vec<Violation> {
    check_with(packages, LAYERS, TOP)
}

/// [`check`] against a given table, so tests can use a small made-up one.
pub(crate) fn check_with(
    packages: &[Package],
    layers: &[(&str, &[&str])],
    top: &[&str],
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for p in packages {
        let manifest = p.dir.join("Cargo.toml");
        if top.contains(&p.name.as_str()) {
            continue;
        }
        let Some(allowed) = below(layers, &p.name) else {
            violations.push(Violation::new(
                manifest,
                RULE,
                format!(
                    "{} is not in the layer table: add it to LAYERS in \
                     xtask/src/tidy/layers.rs with the crates it sits on",
                    p.name
                ),
            ));
            continue;
        };
        for dep in &p.deps {
            let is_member = packages.iter().any(|m| m.name == dep.name);
            if !is_member || dep.name == p.name || allowed.contains(&dep.name.as_str()) {
                continue;
            }
            let may = if allowed.is_empty() {
                "no weft crate".to_string()
            } else {
                allowed.join(", ")
            };
            let kind = match dep.kind {
                DepKind::Normal => String::new(),
                k => format!(" ({}-dependency)", k.as_str()),
            };
            violations.push(Violation::new(
                manifest.clone(),
                RULE,
                format!(
                    "{} depends on {}{kind}, but may depend only on {may} (ARCHITECTURE.md, \
                     dependency rules)",
                    p.name, dep.name
                ),
            ));
        }
    }
    violations
}

/// Every crate below `krate` in `layers` (what it sits on, transitively),
/// or `None` when `krate` is not in the table.
fn below<'a>(layers: &[(&'a str, &'a [&'a str])], krate: &str) -> Option<Vec<&'a str>> {
    let direct = |name: &str| layers.iter().find(|(n, _)| *n == name).map(|(_, on)| *on);
    let mut found: Vec<&str> = Vec::new();
    let mut pending: Vec<&str> = direct(krate)?.to_vec();
    while let Some(next) = pending.pop() {
        if found.contains(&next) {
            continue;
        }
        found.push(next);
        pending.extend(direct(next).unwrap_or(&[]));
    }
    found.sort_unstable();
    Some(found)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::metadata::Dependency;

    const TABLE: &[(&str, &[&str])] = &[
        ("low", &[]),
        ("mid", &["low"]),
        ("high", &["mid"]),
        ("side", &[]),
    ];

    fn package(name: &str, deps: &[(&str, DepKind)]) -> Package {
        Package {
            name: name.into(),
            dir: PathBuf::from("crates").join(name),
            is_lib: true,
            deps: deps
                .iter()
                .map(|&(name, kind)| Dependency {
                    name: name.into(),
                    kind,
                })
                .collect(),
        }
    }

    #[test]
    fn below_is_transitive() {
        assert_eq!(below(TABLE, "high"), Some(vec!["low", "mid"]));
        assert_eq!(below(TABLE, "low"), Some(vec![]));
        assert_eq!(below(TABLE, "nowhere"), None);
    }

    #[test]
    fn downward_and_outside_dependencies_pass() {
        let packages = [
            package("low", &[("low", DepKind::Dev), ("tokio", DepKind::Normal)]),
            package("mid", &[("low", DepKind::Normal)]),
            package("high", &[("low", DepKind::Normal), ("mid", DepKind::Dev)]),
            package("side", &[]),
            package(
                "app",
                &[("high", DepKind::Normal), ("side", DepKind::Normal)],
            ),
        ];
        assert_eq!(check_with(&packages, TABLE, &["app"]), []);
    }

    #[test]
    fn upward_sideways_and_dev_dependencies_fail() {
        let packages = [
            package("low", &[("mid", DepKind::Dev)]),
            package("mid", &[("side", DepKind::Normal)]),
            package("high", &[("app", DepKind::Build)]),
            package("side", &[]),
            package("app", &[]),
        ];
        let found: Vec<String> = check_with(&packages, TABLE, &["app"])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "crates/low/Cargo.toml: [layering] low depends on mid (dev-dependency), \
                 but may depend only on no weft crate (ARCHITECTURE.md, dependency rules)",
                "crates/mid/Cargo.toml: [layering] mid depends on side, \
                 but may depend only on low (ARCHITECTURE.md, dependency rules)",
                "crates/high/Cargo.toml: [layering] high depends on app (build-dependency), \
                 but may depend only on low, mid (ARCHITECTURE.md, dependency rules)",
            ]
        );
    }

    #[test]
    fn unknown_crates_fail() {
        let packages = [package("new", &[])];
        let found = check_with(&packages, TABLE, &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("not in the layer table"));
    }

    #[test]
    fn the_real_table_follows_design() {
        assert_eq!(
            below(LAYERS, "weft-rpc"),
            Some(vec!["weft-link", "weft-messaging", "weft-packeter"])
        );
        assert_eq!(below(LAYERS, "weft-stun"), Some(vec![]));
        assert_eq!(below(LAYERS, "weft-netiface"), Some(vec![]));
        assert_eq!(below(LAYERS, "weft-discovery"), Some(vec!["weft-netiface"]));
        let traversal = below(LAYERS, "weft-traversal").unwrap();
        assert!(!traversal.contains(&"weft-discovery") && traversal.contains(&"weft-link"));
        let participant = below(LAYERS, "weft-participant").unwrap();
        assert!(!participant.contains(&"weft-stun") && !participant.contains(&"weft-rpc"));
    }
}
