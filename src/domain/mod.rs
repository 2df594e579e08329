//! Plain domain types and pure decisions: no IO, no clock (callers pass `now`).

pub mod alert;
pub mod ids;
pub mod time;

/// Implements, for an enum stored as TEXT, `ALL`, `as_str`, `parse` (an unknown value
/// is an error naming `what`), `TryFrom<String>` (for `#[sqlx(try_from = "String")]`,
/// so a row with an unknown value is a decode error, never a silent default) and
/// `Display`, from one list of variants and their texts.
#[macro_export]
macro_rules! text_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}", $what))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
