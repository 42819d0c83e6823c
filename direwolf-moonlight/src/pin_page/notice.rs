//! What the PIN page tells a person before they type anything when nobody can log in: a fresh
//! install refuses PINs entered without login, so the page says how to get one.

use std::sync::OnceLock;

use super::{PIN_PAGE, PinEntry};

/// Why a PIN cannot be entered on this server yet, shown on the page before the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Someone can log in (or PINs without login are allowed): no notice.
    None,
    /// Local accounts exist but no user has a password yet (a fresh `direwolf serve`).
    NoAccountsYet,
    /// No way to log in is configured at all (a `direwolf proxy` without single sign-on or a
    /// login proxy).
    NoLoginConfigured,
}

/// The refusal of a PIN entered without login while no user has a password yet.
pub const NO_LOGIN_YET: &str = "No one can log in yet: on the server run `direwolf user add NAME` and \
`direwolf user passwd NAME`, then enter that name and password here with the PIN; or ask an \
administrator for a pairing link (`direwolf pairing link NAME`)";

/// The refusal of a PIN entered without login where no login is configured.
pub const NO_LOGIN_CONFIGURED: &str = "No one can log in on this server: ask an administrator to \
approve this pairing for you (`direwolf pairing approve SECRET --pin PIN --user NAME`), or to set up \
single sign-on (--oidc-issuer) or a login proxy (--trusted-proxy)";

impl PinEntry {
    /// The notice the page shows now: none once anyone can log in.
    pub async fn notice(&self) -> Notice {
        if self.proxies.allow_unauthenticated || !self.proxies.networks.is_empty() || self.oidc.is_some() {
            return Notice::None;
        }
        let Some(accounts) = &self.accounts else {
            return Notice::NoLoginConfigured;
        };
        match accounts.users.list().await {
            Ok(users) if !users.iter().any(|u| u.password.is_some()) => Notice::NoAccountsYet,
            // An unreadable user list is answered when the PIN is posted.
            _ => Notice::None,
        }
    }
}

/// The page with (`sso`) or without the "Log in with single sign-on" link, and with `notice`.
pub fn page(sso: bool, notice: Notice) -> &'static str {
    static PAGES: OnceLock<[String; 6]> = OnceLock::new();
    let pages = PAGES.get_or_init(|| {
        let render = |sso: bool, notice: Notice| {
            let page = if sso {
                PIN_PAGE.replace(r#"data-sso="off""#, r#"data-sso="on""#)
            } else {
                PIN_PAGE.to_owned()
            };
            let (name, text) = match notice {
                Notice::None => return page,
                Notice::NoAccountsYet => ("accounts", NO_LOGIN_YET),
                Notice::NoLoginConfigured => ("configured", NO_LOGIN_CONFIGURED),
            };
            page.replace(r#"data-notice="none""#, &format!(r#"data-notice="{name}""#))
                .replace("<!--notice-->", &escape(text))
        };
        let notices = [Notice::None, Notice::NoAccountsYet, Notice::NoLoginConfigured];
        let mut all = notices
            .map(|n| render(false, n))
            .into_iter()
            .chain(notices.map(|n| render(true, n)));
        std::array::from_fn(|_| all.next().expect("six pages"))
    });
    let index = match notice {
        Notice::None => 0,
        Notice::NoAccountsYet => 1,
        Notice::NoLoginConfigured => 2,
    } + if sso { 3 } else { 0 };
    &pages[index]
}

/// `text` as HTML text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_is_in_the_page_only_when_nobody_can_log_in() {
        assert!(page(false, Notice::None).contains(r#"data-notice="none""#));
        assert!(!page(false, Notice::None).contains("No one can log in"));
        let fresh = page(false, Notice::NoAccountsYet);
        assert!(fresh.contains(r#"data-notice="accounts""#));
        assert!(fresh.contains("direwolf user passwd NAME"));
        let cluster = page(true, Notice::NoLoginConfigured);
        assert!(cluster.contains(r#"data-notice="configured""#) && cluster.contains(r#"data-sso="on""#));
        assert!(cluster.contains("direwolf pairing approve"));
    }
}
