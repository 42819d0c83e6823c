//! Runs redb's open of a damaged file without letting its panics reach the user.
//!
//! redb 3 panics on some damaged files instead of returning an error: a truncated file fails
//! `assertion failed: storage.raw_file_len()? >= header.layout().len()`, a zeroed B-tree page
//! `internal error: entered unreachable code`. [`contain`] catches such a panic and returns its
//! message, and keeps the default panic report (a backtrace on stderr) quiet for it: a panic
//! hook, installed once, stays silent on the thread while it runs [`contain`] and hands every
//! other panic to the hook that was there before.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs [`contain`].
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Runs `f`; a panic in it becomes `Err(its message)`, reported nowhere else.
pub(super) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| message(payload.as_ref()))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_value_passes() {
        assert_eq!(contain(|| 7), Ok(7));
        assert_eq!(
            contain(|| -> u8 { panic!("boom {}", 1) }),
            Err("boom 1".to_owned())
        );
        assert_eq!(contain(|| -> u8 { panic!("static") }), Err("static".to_owned()));
        assert!(!QUIET.with(Cell::get));
    }
}
