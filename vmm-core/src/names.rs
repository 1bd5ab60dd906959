//! Names people give to things (images, recipes, SSH keys, tokens): free text, shown back
//! as given, never part of a path or a libvirt name.

use crate::error::{Error, Result};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Checks a name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, no spaces at
/// either end (refused, not trimmed, so what is kept is what was sent).
pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty()
        || name.trim() != name
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters, no control characters or edge spaces"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_as_sent_or_refused() {
        for good in ["debian-12", "Ann's laptop", "ключ", &"x".repeat(MAX_NAME_CHARS)] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", " ", " padded", "padded ", "tab\there", "new\nline", &"x".repeat(MAX_NAME_CHARS + 1)]
        {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
