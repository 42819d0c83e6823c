//! `direwolf completion SHELL` and `direwolf man [SUBCOMMAND]`: the shell completions and the man
//! pages, made from the same command-line definition as the parser, so they never drift from it.

use std::io::Write;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

/// Writes the completion script of `shell` for `direwolf`.
pub fn completion<C: CommandFactory>(shell: Shell, out: &mut dyn Write) {
    let mut command = C::command();
    clap_complete::generate(shell, &mut command, "direwolf", out);
}

/// Writes the man page (roff) `direwolf(1)`, or `direwolf-SUBCOMMAND(1)`.
///
/// # Errors
/// An unknown subcommand, or a failed write.
pub fn man<C: CommandFactory>(subcommand: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    let command = C::command();
    let page = match subcommand {
        None => command,
        Some(name) => {
            let sub = command
                .find_subcommand(name)
                .with_context(|| format!("no subcommand {name:?}: see `direwolf --help`"))?;
            sub.clone().name(format!("direwolf-{name}"))
        }
    };
    clap_mangen::Man::new(page)
        .render(out)
        .context("cannot write the man page")
}
