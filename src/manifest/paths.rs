//! The rules a manifest's paths and names obey, so that a restore can never leave its
//! target, and how raw-byte paths are shown to people.

/// Paths are raw bytes; shown as UTF-8 where they are, with `\xNN` for other bytes.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for piece in path.utf8_chunks() {
        for c in piece.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in piece.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub fn serialize_path<S: serde::Serializer>(path: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&display_path(path))
}

pub(super) fn serialize_paths<S: serde::Serializer>(paths: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| display_path(p)))
}

/// A manifest path must be relative, '/'-separated, without empty, `.` or `..`
/// components and without NUL: restoring it can then never leave the target.
pub fn validate_path(path: &[u8]) -> Result<(), String> {
    let bad = path.is_empty()
        || path.contains(&0)
        || path.split(|&b| b == b'/').any(|part| part.is_empty() || part == b"." || part == b"..");
    if bad {
        Err(format!("unsafe path {:?} in manifest", display_path(path)))
    } else {
        Ok(())
    }
}

/// Where components go in a restore of the whole snapshot: each placement is the target
/// itself (shared by any number) or a safe relative path, no two the same. One may lie
/// inside another (a broker's stores inside its work directory); the outer one then
/// holds nothing below the inner one's place, and components at the target no path
/// twice (checked by the restore).
pub fn validate_placements<'a>(placements: impl IntoIterator<Item = &'a [u8]>) -> Result<(), String> {
    let mut seen: Vec<&[u8]> = Vec::new();
    for placement in placements {
        if !placement.is_empty() {
            validate_path(placement).map_err(|e| format!("placement: {e}"))?;
            if seen.contains(&placement) {
                return Err(format!("two components are placed at {}", display_path(placement)));
            }
        }
        seen.push(placement);
    }
    Ok(())
}

/// Whether `path` is `dir` or below it.
pub fn inside(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// A component name becomes a directory name in a restore target.
pub fn validate_component_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("unsafe component name {name:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_rejected() {
        for bad in [&b""[..], b"/etc", b"a/../b", b"..", b"a//b", b"./a", b"a/", b"a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        validate_path(b"a/b/\xff.c").unwrap();
    }

    #[test]
    fn placements_may_nest_but_not_repeat() {
        let ok: [&[u8]; 3] = [b"", b"node/config", b"node/messages"];
        validate_placements(ok).unwrap();
        validate_placements([&b""[..], b"", b"a", b"a/b"]).unwrap();
        let bad: [&[&[u8]]; 2] = [&[b"a", b"a"], &[b"a/b", b"c", b"a/b"]];
        for placements in bad {
            assert!(validate_placements(placements.iter().copied()).is_err(), "{placements:?}");
        }
        assert!(validate_placements([&b"../x"[..]]).is_err());
        assert!(inside(b"a/b", b"a") && inside(b"a", b"a") && !inside(b"ab", b"a"));
    }

    #[test]
    fn display_path_escapes_non_utf8() {
        assert_eq!(display_path(b"a/\xffb\\"), "a/\\xffb\\\\");
    }
}
