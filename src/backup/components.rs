//! Which components a backup copies, under which names and at which places in a
//! restore: all decided, and checked, before any dump command starts.

use super::Input;
use crate::error::{Error, Result};
use crate::manifest;
use crate::stores::{Component, StoreType};
use std::path::PathBuf;

/// The components of a backup. A path alone keeps today's layout (its component, or a
/// work directory's several, placed at the restore target); with other inputs, each
/// path's components go below a directory named after it, and dumps (one file each)
/// sit beside them at the target. Names and places are checked before any dump command
/// starts.
pub(super) fn components(
    inputs: &[Input],
    roots: &[(PathBuf, StoreType)],
    offline: bool,
) -> Result<Vec<Component>> {
    let alone = inputs.len() == 1;
    let mut roots = roots.iter();
    let mut slots: Vec<Option<Component>> = Vec::new();
    // (name, placement, is a dump)
    let mut names: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for input in inputs {
        let (name, exclude) = match input {
            Input::Path { name, exclude, .. } => (name, exclude),
            Input::Dump { name, .. } => {
                names.push((name.clone(), Vec::new(), true));
                slots.push(None);
                continue;
            }
        };
        let (root, store_type) = roots.next().expect("one root per path");
        let mut found = store_type.components(root, offline, exclude)?;
        if let (Some(name), [one]) = (name, found.as_mut_slice()) {
            one.name.clone_from(name);
        }
        if !alone {
            let source = match name {
                Some(name) => name.clone(),
                None => root.file_name().map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned()),
            };
            let several = found.len() > 1;
            for c in &mut found {
                if several {
                    c.name = format!("{source}.{}", c.name);
                }
                let mut placement = source.as_bytes().to_vec();
                if !c.placement.is_empty() {
                    placement.push(b'/');
                    placement.extend_from_slice(&c.placement);
                }
                c.placement = placement;
            }
        }
        for c in found {
            names.push((c.name.clone(), c.placement.clone(), false));
            slots.push(Some(c));
        }
    }
    check_names(&names)?;
    let mut dumps = inputs.iter().filter_map(|input| match input {
        Input::Dump { name, command } => Some((name, command)),
        Input::Path { .. } => None,
    });
    let mut out = Vec::new();
    for slot in slots {
        out.push(match slot {
            Some(component) => component,
            None => {
                let (name, command) = dumps.next().expect("one slot per dump");
                crate::stores::dump::component(name, command)?
            }
        });
    }
    Ok(out)
}

/// Every component needs its own name, and a restore of the snapshot needs places that
/// do not clash: a dump's file (at the target, under its name) must not be where
/// another component goes.
fn check_names(names: &[(String, Vec<u8>, bool)]) -> Result<()> {
    for (i, (name, placement, _)) in names.iter().enumerate() {
        manifest::validate_component_name(name).map_err(Error::Invalid)?;
        if names[..i].iter().any(|(other, _, _)| other == name) {
            return Err(Error::Invalid(format!(
                "two components would be named {name:?}: name them in a plan file (or rename one)"
            )));
        }
        let first = placement.split(|&b| b == b'/').next().unwrap_or_default();
        if let Some((dump, _, _)) =
            names.iter().find(|(n, _, dump)| *dump && !first.is_empty() && n.as_bytes() == first)
        {
            return Err(Error::Invalid(format!(
                "the dump {dump:?} would be restored where component {name:?} goes; rename one"
            )));
        }
    }
    manifest::validate_placements(names.iter().map(|(_, p, _)| p.as_slice())).map_err(Error::Invalid)
}
