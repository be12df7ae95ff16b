//! `init`: create a repository.

use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::repo;
use serde_json::json;
use std::io::Write;

pub fn run(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let path = g.repo_path()?;
    let config = repo::init_local(path)?;
    let id = cairn::id::to_hex(&config.repository_id);
    if g.json {
        writeln!(out, "{}", json!({ "path": path, "id": id }))?;
    } else {
        writeln!(out, "created cairn repository {} at {}", &id[..12], path.display())?;
    }
    Ok(Exit::Success)
}
