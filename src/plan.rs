//! Backup-set files (TOML), kept beside an application's other configuration: the set's
//! name, its components, the hooks that quiesce and resume the application, and the
//! retention to apply later. A typo is an error that names the line and the key.
//!
//! ```toml
//! set = "exo"
//!
//! [hooks]
//! pre = "systemctl stop exo"
//! post = "systemctl start exo"
//!
//! [retention]
//! keep_daily = 7
//! keep_monthly = 12
//!
//! [[component]]
//! name = "data"
//! path = "/srv/exo/data"           # relative paths are relative to this file
//! exclude = ["data.jcr/**/swap", "jta"]
//!
//! [[component]]
//! name = "jcr"
//! dump = "pg_dump -Fc exo_jcr"
//! ```

use crate::backup::Input;
use crate::error::{Error, Result};
use crate::retention::{Policy, Span};
use crate::stores::StoreType;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub struct Plan {
    pub set: String,
    pub tags: Vec<String>,
    pub pre_exec: Option<String>,
    pub post_exec: Option<String>,
    pub retention: Option<Policy>,
    pub inputs: Vec<Input>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    set: String,
    #[serde(default)]
    tags: Vec<String>,
    hooks: Option<Hooks>,
    retention: Option<Retention>,
    #[serde(default)]
    component: Vec<ComponentSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hooks {
    pre: Option<String>,
    post: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Retention {
    keep_last: u32,
    keep_hourly: u32,
    keep_daily: u32,
    keep_weekly: u32,
    keep_monthly: u32,
    keep_yearly: u32,
    keep_within: Option<String>,
    keep_tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentSpec {
    name: String,
    path: Option<PathBuf>,
    #[serde(rename = "type")]
    store_type: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    dump: Option<String>,
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Plan::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// `base` is the directory relative component paths start from.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Plan, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))?;
        if file.component.is_empty() {
            return Err("no [[component]]: nothing to back up".into());
        }
        let mut inputs = Vec::new();
        for (i, c) in file.component.into_iter().enumerate() {
            let what = format!("component {} ({:?})", i + 1, c.name);
            crate::manifest::validate_component_name(&c.name).map_err(|e| format!("{what}: {e}"))?;
            inputs.push(match (c.path, c.dump) {
                (Some(path), None) => {
                    let store_type = match c.store_type.as_deref() {
                        None | Some("auto") => None,
                        Some(name) => Some(
                            StoreType::parse(name)
                                .filter(|t| !matches!(t, StoreType::Json | StoreType::Dump))
                                .ok_or_else(|| {
                                    format!("{what}: unknown type {name:?} (auto, dir, bdb, bdb-je, qpid)")
                                })?,
                        ),
                    };
                    Input::Path { path: base.join(path), name: Some(c.name), store_type, exclude: c.exclude }
                }
                (None, Some(command)) if c.store_type.is_none() && c.exclude.is_empty() => {
                    Input::Dump { name: c.name, command }
                }
                (None, Some(_)) => return Err(format!("{what}: a dump has no type or exclude")),
                _ => return Err(format!("{what}: give either path or dump")),
            });
        }
        let retention = match file.retention {
            None => None,
            Some(r) => Some(Policy {
                last: r.keep_last,
                hourly: r.keep_hourly,
                daily: r.keep_daily,
                weekly: r.keep_weekly,
                monthly: r.keep_monthly,
                yearly: r.keep_yearly,
                within: r.keep_within.as_deref().map(Span::parse).transpose()?,
                tags: r.keep_tags,
            }),
        };
        let (pre_exec, post_exec) = file.hooks.map_or((None, None), |h| (h.pre, h.post));
        Ok(Plan { set: file.set, tags: file.tags, pre_exec, post_exec, retention, inputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_and_typos_name_their_line_and_key() {
        let text = "set = \"exo\"\n[hooks]\npre = \"true\"\n[retention]\nkeep_daily = 7\n\n[[component]]\nname = \"data\"\npath = \"data\"\nexclude = [\"jta\"]\n\n[[component]]\nname = \"jcr\"\ndump = \"echo hi\"\n";
        let plan = Plan::parse(text, Path::new("/etc/cairn")).unwrap();
        assert_eq!((plan.set.as_str(), plan.pre_exec.as_deref()), ("exo", Some("true")));
        assert_eq!(plan.retention.unwrap().daily, 7);
        match &plan.inputs[0] {
            Input::Path { path, name, exclude, .. } => {
                assert_eq!((path.as_path(), name.as_deref()), (Path::new("/etc/cairn/data"), Some("data")));
                assert_eq!(exclude, &["jta"]);
            }
            Input::Dump { .. } => panic!("a path"),
        }
        assert!(
            matches!(&plan.inputs[1], Input::Dump { name, command } if name == "jcr" && command == "echo hi")
        );

        let typo = text.replace("exclude", "exlcude");
        let err = Plan::parse(&typo, Path::new("/")).err().unwrap();
        assert!(err.contains("line 10") && err.contains("exlcude"), "{err}");
        let both = text.replace("dump = \"echo hi\"", "dump = \"echo hi\"\npath = \"x\"");
        assert!(Plan::parse(&both, Path::new("/")).err().unwrap().contains("either path or dump"));
        let bad_type = text.replace("exclude = [\"jta\"]", "type = \"oracle\"");
        assert!(Plan::parse(&bad_type, Path::new("/")).err().unwrap().contains("unknown type"));
    }
}
