//! Questions before something that cannot be undone (`cert rm`, `cert revoke`).

use std::io::{BufRead, IsTerminal, Write};

use crate::CliError;

/// On a terminal, print `question` (ending in `[y/N] `) on stderr and read the answer: true
/// for y/yes. Elsewhere (scripts, pipes) nothing can answer, so the action is refused with
/// `refused` and a hint to pass `--yes` (kind `confirmation-required`, exit code 1).
pub fn confirm(question: &str, refused: &str) -> Result<bool, CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::failure(format!(
            "{refused}: this needs confirmation, and standard input is not a terminal; pass \
             --yes to do it from a script"
        ))
        .kind("confirmation-required"));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failure(format!("reading the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
