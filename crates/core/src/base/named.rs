//! The `named!` macro: stored-by-name enums (conversation and agent statuses, item kinds)
//! get their names, parser and list of values from one table.

/// `as_str`, `parse` and `ALL` for an enum of unit variants stored and shown by name.
macro_rules! named {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<$t> {
                $t::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }
    };
}
pub(crate) use named;
