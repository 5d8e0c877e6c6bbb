//! Validation and normalisation of user-supplied text shared by the services:
//! lengths, account names (NFKC, no control or format characters, a UTS #39
//! confusable skeleton for uniqueness) and the folded form the word filter
//! matches on.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategoryGroup, UnicodeEmoji, UnicodeGeneralCategory};

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

/// Longest skeleton an account name may have (the width of its unique column).
pub const MAX_SKELETON_CHARS: usize = 255;

/// `U+XXXX`, for messages naming a character.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Whether `chars[i]`, a zero-width joiner, joins two emoji (a family, a
/// profession): the one format character a name may carry.
fn joins_emoji(chars: &[char], i: usize) -> bool {
    let emoji = |c: Option<&char>| c.is_some_and(|c| c.is_emoji_char() || *c == '\u{FE0F}');
    i > 0 && emoji(chars.get(i - 1)) && emoji(chars.get(i + 1))
}

/// An account name as stored: refused when it carries a control (Cc) or format
/// (Cf) character — newlines, tabs, zero-width characters, bidirectional
/// overrides, a byte-order mark — except a joiner inside an emoji sequence;
/// otherwise its NFKC form, 1 to `max` characters, without leading or trailing
/// spaces. `what` names the parameter.
pub fn account_name(what: &str, raw: &str, max: usize) -> Result<String> {
    let chars: Vec<char> = raw.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let category = c.general_category();
        let control = category == unicode_properties::GeneralCategory::Control;
        let format =
            category == unicode_properties::GeneralCategory::Format && !(c == '\u{200D}' && joins_emoji(&chars, i));
        if control || format {
            let kind = if control { "control" } else { "invisible formatting" };
            return Err(Error::invalid(format!(
                "{what} must not contain {kind} characters ({} at position {})",
                code_point(c),
                i + 1
            )));
        }
    }
    let name: String = raw.nfkc().collect();
    check_length(what, &name, 1, max)?;
    if name.trim() != name {
        return Err(Error::invalid(format!("{what} must not start or end with spaces")));
    }
    if skeleton(&name).chars().count() > MAX_SKELETON_CHARS {
        return Err(Error::invalid(format!("{what} is too long once normalised")));
    }
    Ok(name)
}

/// The NFKC form of `text`.
pub fn nfkc(text: &str) -> String {
    text.nfkc().collect()
}

/// The UTS #39 confusable skeleton of `name`, case-folded: two names with the
/// same skeleton look alike (NFC/NFD forms, Latin/Cyrillic look-alikes,
/// `Alice`/`alice`) and cannot both be accounts.
pub fn skeleton(name: &str) -> String {
    // Prototypes first (`I` is `l`), then case, then the prototypes of what
    // lower-casing made (a capital Cyrillic letter becomes a small one).
    let once: String = unicode_security::skeleton(&nfkc(name)).flat_map(char::to_lowercase).collect();
    unicode_security::skeleton(&once).collect()
}

/// The form the word filter compares: compatibility-decomposed (full-width
/// and styled letters become plain ones), lower-cased, without format
/// characters (zero-width spaces, joiners, bidirectional marks) and combining
/// marks, so none of them can split or disguise a word.
pub fn fold_for_matching(text: &str) -> String {
    text.nfkd()
        .flat_map(char::to_lowercase)
        .filter(|c| {
            let group = c.general_category_group();
            group != GeneralCategoryGroup::Mark && c.general_category() != unicode_properties::GeneralCategory::Format
        })
        .collect()
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

    #[test]
    fn names_refuse_control_and_format_characters_by_code_point() {
        for (raw, named) in [
            ("a\nb", "U+000A"),
            ("a\tb", "U+0009"),
            ("zero\u{200B}width", "U+200B"),
            ("\u{202E}evil", "U+202E"),
            ("\u{FEFF}bom", "U+FEFF"),
            ("a\u{200D}b", "U+200D"),
        ] {
            let message = account_name("username", raw, 32).unwrap_err().public_message();
            assert!(message.contains(named) && message.contains("username"), "{raw:?}: {message}");
        }
        assert_eq!(account_name("username", "👩\u{200D}👩\u{200D}👧", 32).unwrap(), "👩\u{200D}👩\u{200D}👧");
        assert_eq!(account_name("username", "名字", 32).unwrap(), "名字");
    }

    #[test]
    fn names_are_nfkc_and_look_alikes_share_a_skeleton() {
        assert_eq!(account_name("username", "e\u{301}", 32).unwrap(), "\u{E9}");
        assert_eq!(account_name("username", "ＡＢＣ", 32).unwrap(), "ABC");
        assert_eq!(skeleton("caf\u{E9}"), skeleton("cafe\u{301}"));
        assert_eq!(skeleton("paypal"), skeleton("р\u{0430}ypal"), "Cyrillic р and а");
        assert_eq!(skeleton("Alice"), skeleton("alice"));
        assert_eq!(skeleton("admin"), skeleton("admіn"), "Ukrainian і");
        assert_ne!(skeleton("alice"), skeleton("alicia"));
        assert_ne!(skeleton("名字"), skeleton("名子"));
    }

    #[test]
    fn the_filter_form_drops_what_hides_a_word() {
        for disguised in ["f\u{200B}uck", "ｆｕｃｋ", "f\u{301}u\u{308}ck", "FUCK", "f\u{2060}u\u{200D}ck"] {
            assert!(
                fold_for_matching(disguised).contains("fuck"),
                "{disguised:?} → {:?}",
                fold_for_matching(disguised)
            );
        }
        assert_eq!(fold_for_matching("剧透"), "剧透");
        assert!(!fold_for_matching("f uck").contains("fuck"), "spaces still separate words");
    }
}
