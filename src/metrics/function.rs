//! The `function` label of the request and origin families: the original function
//! first, then the proxy's listed functions, then `other`. The set is fixed at start-up
//! (the proxy's functions change only with a restart), so a chain resolves its slot once
//! and a request records by index, without hashing a label.

use crate::names::{ORIGINAL_FUNCTION, OTHER_FUNCTION};

/// A function's slot in the request and origin families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function(pub(super) usize);

impl Function {
    /// `get_codette_context`, which `/codette/context` answers.
    pub const ORIGINAL: Function = Function(0);
}

/// The label values, by slot.
pub(super) struct Functions {
    names: Box<[Box<str>]>,
}

impl Functions {
    pub fn new<'a>(listed: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<Box<str>> = vec![ORIGINAL_FUNCTION.into()];
        for name in listed {
            if name != OTHER_FUNCTION && !names.iter().any(|have| &**have == name) {
                names.push(name.into());
            }
        }
        names.push(OTHER_FUNCTION.into());
        Self {
            names: names.into(),
        }
    }

    /// The slot of `name`; `other` for a function not listed at start-up.
    pub fn slot(&self, name: &str) -> Function {
        Function(
            self.names
                .iter()
                .position(|have| &**have == name)
                .unwrap_or(self.names.len() - 1),
        )
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `(lane, label value)` of every slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names.iter().map(|n| &**n).enumerate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original comes first and once, `other` last; unknown names are `other`.
    #[test]
    fn slots_are_bounded_by_the_list() {
        let f = Functions::new([
            "get_codette_context",
            "search_files",
            "other",
            "search_files",
        ]);
        let names: Vec<&str> = f.iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["get_codette_context", "search_files", "other"]);
        assert_eq!(f.slot("get_codette_context"), Function::ORIGINAL);
        assert_eq!(f.slot("search_files"), Function(1));
        assert_eq!(f.slot("drop_tables"), Function(2));
    }
}
