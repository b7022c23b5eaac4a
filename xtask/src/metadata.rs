//! The workspace as `cargo metadata` describes it: its packages, where they
//! live, whether they are libraries, and what they depend on.

use std::path::{Path, PathBuf};

use crate::json::{self, Value};
use crate::util::cargo;

/// The workspace's member packages.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) packages: Vec<Package>,
}

/// One member package.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: String,
    /// Its directory, relative to the workspace root (`crates/link`).
    pub(crate) dir: PathBuf,
    /// Whether it has a library target.
    pub(crate) is_lib: bool,
    pub(crate) deps: Vec<Dependency>,
}

/// One entry of a package's `[dependencies]`, `[dev-dependencies]` or
/// `[build-dependencies]`.
#[derive(Debug, Clone)]
pub(crate) struct Dependency {
    /// The package depended on (its real name, not a rename).
    pub(crate) name: String,
    pub(crate) kind: DepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    Normal,
    Dev,
    Build,
}

impl DepKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DepKind::Normal => "normal",
            DepKind::Dev => "dev",
            DepKind::Build => "build",
        }
    }
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` (no resolution, no network).
    pub(crate) fn load() -> Result<Workspace, String> {
        let out = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .map_err(|e| format!("could not run cargo metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| "cargo metadata printed invalid UTF-8".to_string())?;
        Workspace::from_json(&text)
    }

    /// Reads the output of `cargo metadata --format-version 1`.
    pub(crate) fn from_json(text: &str) -> Result<Workspace, String> {
        let doc = json::parse(text).map_err(|e| format!("cargo metadata: {e}"))?;
        let field = |v: &'_ Value, key: &str| -> Result<String, String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("cargo metadata: no string `{key}`"))
        };
        let list = |v: &'_ Value, key: &str| -> Result<Vec<Value>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .map(<[Value]>::to_vec)
                .ok_or_else(|| format!("cargo metadata: no list `{key}`"))
        };
        let root = PathBuf::from(field(&doc, "workspace_root")?);
        let members: Vec<String> = list(&doc, "workspace_members")?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        let mut packages = Vec::new();
        for p in list(&doc, "packages")? {
            if !members.contains(&field(&p, "id")?) {
                continue;
            }
            let manifest = PathBuf::from(field(&p, "manifest_path")?);
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .ok_or_else(|| format!("{} is outside the workspace", manifest.display()))?
                .to_path_buf();
            let is_lib = list(&p, "targets")?.iter().any(|t| {
                t.get("kind")
                    .and_then(Value::as_array)
                    .is_some_and(|kinds| kinds.iter().any(|k| k.as_str() == Some("lib")))
            });
            let mut deps = Vec::new();
            for d in list(&p, "dependencies")? {
                let kind = match d.get("kind") {
                    None | Some(Value::Null) => DepKind::Normal,
                    Some(k) if k.as_str() == Some("dev") => DepKind::Dev,
                    Some(k) if k.as_str() == Some("build") => DepKind::Build,
                    Some(k) => return Err(format!("cargo metadata: dependency kind {k:?}")),
                };
                deps.push(Dependency {
                    name: field(&d, "name")?,
                    kind,
                });
            }
            packages.push(Package {
                name: field(&p, "name")?,
                dir,
                is_lib,
                deps,
            });
        }
        packages.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(Workspace { packages })
    }

    /// The members under `crates/`: the crates users build (libraries and
    /// the `weft` binary), each of which must build alone.
    pub(crate) fn crates(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .iter()
            .filter(|p| p.dir.starts_with(Path::new("crates")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `cargo metadata --no-deps`, cut down.
    const SAMPLE: &str = r#"{
      "packages": [
        {"name": "weft-b", "id": "path+file:///w/crates/b#0.1.0",
         "manifest_path": "/w/crates/b/Cargo.toml",
         "targets": [{"kind": ["lib"]}, {"kind": ["test"]}],
         "dependencies": [
           {"name": "weft-a", "kind": null, "path": "/w/crates/a"},
           {"name": "tokio", "kind": "dev", "rename": "tk"},
           {"name": "cc", "kind": "build"}
         ]},
        {"name": "weft-cli", "id": "path+file:///w/crates/cli#0.1.0",
         "manifest_path": "/w/crates/cli/Cargo.toml",
         "targets": [{"kind": ["bin"]}], "dependencies": []},
        {"name": "weft-a", "id": "path+file:///w/crates/a#0.1.0",
         "manifest_path": "/w/crates/a/Cargo.toml",
         "targets": [{"kind": ["lib"]}], "dependencies": []},
        {"name": "xtask", "id": "path+file:///w/xtask#0.1.0",
         "manifest_path": "/w/xtask/Cargo.toml",
         "targets": [{"kind": ["bin"]}], "dependencies": []},
        {"name": "outsider", "id": "registry+x#1.0.0",
         "manifest_path": "/elsewhere/Cargo.toml",
         "targets": [{"kind": ["lib"]}], "dependencies": []}
      ],
      "workspace_members": ["path+file:///w/crates/b#0.1.0", "path+file:///w/crates/cli#0.1.0",
                            "path+file:///w/crates/a#0.1.0", "path+file:///w/xtask#0.1.0"],
      "workspace_root": "/w",
      "version": 1
    }"#;

    #[test]
    fn reads_members_targets_and_dependencies() {
        let ws = Workspace::from_json(SAMPLE).unwrap();
        let names: Vec<&str> = ws.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["weft-a", "weft-b", "weft-cli", "xtask"]);
        let crates: Vec<&str> = ws.crates().map(|p| p.name.as_str()).collect();
        assert_eq!(crates, ["weft-a", "weft-b", "weft-cli"]);
        let libs: Vec<bool> = ws.crates().map(|p| p.is_lib).collect();
        assert_eq!(libs, [true, true, false]);
        let b = &ws.packages[1];
        assert_eq!(b.dir, Path::new("crates/b"));
        let deps: Vec<(&str, DepKind)> = b.deps.iter().map(|d| (d.name.as_str(), d.kind)).collect();
        assert_eq!(
            deps,
            [
                ("weft-a", DepKind::Normal),
                ("tokio", DepKind::Dev),
                ("cc", DepKind::Build)
            ]
        );
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(Workspace::from_json("{}").is_err());
        assert!(Workspace::from_json(r#"{"workspace_root": "/w", "packages": []}"#).is_err());
    }
}
