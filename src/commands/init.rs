//! `init`: create a repository.

use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::repo;
use cairn::storage::Location;
use serde_json::json;
use std::io::Write;

pub fn run(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let location = g.location()?;
    let config = match &location {
        Location::Local(path) => repo::init_local(path)?,
        other => repo::init_empty(other.open()?.as_ref())?,
    };
    let id = cairn::id::to_hex(&config.repository_id);
    let place = location.display();
    if g.json {
        writeln!(out, "{}", json!({ "path": place, "id": id }))?;
    } else {
        writeln!(out, "created cairn repository {} at {place}", &id[..12])?;
    }
    Ok(Exit::Success)
}
