//! What a client may call things: the ids of records and the names of
//! people. Both come from outside and go everywhere (URLs, logs, terminals,
//! the reports, a web page), so each is checked once, where serde reads it,
//! and a command that breaks a rule is a 400 that says which.
//!
//! - **An id** is part of a URL (`/api/users/ann`): letters, digits, `-`
//!   and `_`, nothing to encode. It cannot be a path a service answers
//!   itself (`healthz`, `metrics`, `events`) or the gateway keeps from
//!   clients (`breakers`): a user made with it could never be read there.
//! - **A name** is text for people, in any script: accents, CJK, emoji are
//!   names like any other. What is refused is what does something instead
//!   of showing: control characters (NUL cuts C strings short, ESC drives
//!   terminals, BEL rings), line separators (a forged log line), bidi
//!   overrides and isolates (U+202E shows `Ann\u{202E}nimda` as `Annadmin`),
//!   a byte order mark; and a name with nothing to see, such as a lone
//!   zero-width space. (Joiners and variation selectors stay allowed inside a
//!   name: emoji such as 👩‍💻 are made of them.)

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::platform::machinery;

/// An id a client chooses: 1 to 64 letters, digits, `-` or `_` (safe in a
/// URL's path), and not one of a service's own paths (`machinery.rs`): a
/// record at `/healthz` could be made, but never read or changed there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Id(String);

impl TryFrom<String> for Id {
    type Error = String;

    fn try_from(id: String) -> Result<Id, String> {
        let fits = (1..=64).contains(&id.len())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !fits {
            return Err(format!("an id is 1 to 64 letters, digits, - or _; not {id:?}"));
        }
        match machinery::is_own(&id) {
            true => Err(format!(
                "the id {id:?} is a path the services keep for themselves ({}): choose another",
                machinery::own_paths().join(", ")
            )),
            false => Ok(Id(id)),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's name: 1 to 100 characters once trimmed, something to see,
/// nothing that acts on the text around it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(name: String) -> Result<Name, String> {
        let name = name.trim();
        if let Some((what, c)) = name.chars().find_map(|c| acts(c).map(|what| (what, c))) {
            let code = format!("U+{:04X}", u32::from(c));
            return Err(format!("a name is text to be seen; it cannot hold {code}, {what}"));
        }
        if !(1..=100).contains(&name.chars().count()) {
            return Err("a name is 1 to 100 characters".to_string());
        }
        if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
            return Err("a name needs a character one can see; this one has none".to_string());
        }
        Ok(Name(name.to_string()))
    }
}

/// What `c` is, if it does something to the text instead of showing.
fn acts(c: char) -> Option<&'static str> {
    match c {
        '\u{2028}' | '\u{2029}' => Some("a line or paragraph separator"),
        _ if c.is_control() => Some("a control character"),
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
            Some("a bidirectional override or isolate, which reorders the text around it")
        }
        '\u{FEFF}' => Some("a byte order mark"),
        _ => None,
    }
}

/// Characters with nothing to see of their own: fine inside a name (they
/// join emoji, mark a direction), not a name by themselves. Unicode's
/// Default_Ignorable_Code_Point, with the fillers that show as blanks.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{206F}'
        | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}
