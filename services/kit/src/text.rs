//! Validation of user-supplied text shared by the services.

use crate::{Error, Result};

/// Checks that `value` has between `min` and `max` Unicode characters and no
/// control characters other than newlines and tabs; `what` names the parameter.
pub fn check_length(what: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let chars = value.chars().count();
    if chars < min || value.trim().is_empty() && min > 0 {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if chars > max {
        return Err(Error::invalid(format!("{what} must be at most {max} characters, got {chars}")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(Error::invalid(format!("{what} must not contain control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(check_length("comment", &"好".repeat(500), 1, 500).is_ok());
        assert!(check_length("comment", &"好".repeat(501), 1, 500).is_err());
        assert!(check_length("comment", "", 1, 500).is_err());
        assert!(check_length("comment", "   ", 1, 500).is_err());
        assert!(check_length("title", "a\0b", 1, 100).is_err());
        assert!(check_length("title", "line\nbreak", 1, 100).is_ok());
    }
}
