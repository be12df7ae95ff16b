//! The library's hints in command-line words: the library says what is wrong and what
//! kind of step would help; this says which command or flag takes it.

use cairn::error::Hint;

/// The advice for `hint`, as a clause to follow a message.
pub fn advice(hint: Hint) -> &'static str {
    match hint {
        Hint::RepairIndex => "run `cairn repair index` to rebuild it from the packs",
        Hint::Check => "see `cairn check`",
        Hint::CheckThenRepairIndex => "run `cairn check`, then `cairn repair index`",
        Hint::Init => "create one with `cairn init`",
        Hint::Overwrite => "use --overwrite to restore into it",
        Hint::ChooseSet => "say which with --set",
        Hint::ChooseComponent => "say which with --component",
        Hint::Keep => "say what to keep with the --keep-* options (or a plan's [retention] table)",
        Hint::FullBackup => "back up with --full",
        Hint::IncrementalOrFull => "back up without --logs-only (an incremental), or with --full",
        Hint::Offline => "--offline takes an offline copy",
        Hint::HotCopy => "a backup without --offline takes a hot copy",
        Hint::PlainTree => "--type dir takes a plain tree",
    }
}

/// A library error as the user reads it: its message, then the advice it carries.
pub fn explain(error: &cairn::Error) -> String {
    match error.hint() {
        Some(hint) => format!("{error}; {}", advice(hint)),
        None => error.to_string(),
    }
}

/// The same for an error on its way out of a command, wherever the library error sits
/// in its chain.
pub fn explain_chain(error: &anyhow::Error) -> String {
    match error.downcast_ref::<cairn::Error>().and_then(cairn::Error::hint) {
        Some(hint) => format!("{error:#}; {}", advice(hint)),
        None => format!("{error:#}"),
    }
}
