//! Where the patch walker is inside a patch document: a borrowed chain of segments that is
//! rendered as a JSON pointer only when an error needs it.

/// A location in a patch document. Each level borrows its parent, so descending costs nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The location of field `name` below this one.
    pub(crate) fn field<'b>(&'b self, name: &'b str) -> Path<'b> {
        Path::Field(self, name)
    }

    /// The location of list item `index` below this one.
    pub(crate) fn index(&self, index: usize) -> Path<'_> {
        Path::Index(self, index)
    }

    /// The location as an RFC 6901 JSON pointer (`""` for the root).
    pub(crate) fn pointer(&self) -> String {
        let mut segments = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Field(parent, name) => {
                    segments.push(name.replace('~', "~0").replace('/', "~1"));
                    at = parent;
                }
                Path::Index(parent, index) => {
                    segments.push(index.to_string());
                    at = parent;
                }
            }
        }
        segments
            .iter()
            .rev()
            .fold(String::new(), |mut pointer, segment| {
                pointer.push('/');
                pointer.push_str(segment);
                pointer
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn renders_escaped_json_pointer() {
        let root = Path::Root;
        let spec = root.field("spec");
        let list = spec.field("$setElementOrder/containers");
        let item = list.index(2);
        let key = item.field("a~b");
        assert_eq!(root.pointer(), "");
        assert_eq!(key.pointer(), "/spec/$setElementOrder~1containers/2/a~0b");
    }
}
