//! Form bodies as the console's forms send them: repeated fields (the
//! selected rows of a bulk remove) are kept, which a struct extractor
//! would not do.

pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, if it is not empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A checkbox: present and not empty.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_are_all_kept() {
        let f =
            Fields::parse(b"target=192.0.2.1&target=2001%3Adb8%3A%3A%2F32&reason=+a+b+&monitor=on");
        assert_eq!(f.all("target"), ["192.0.2.1", "2001:db8::/32"]);
        assert_eq!(f.text("reason").as_deref(), Some("a b"));
        assert!(f.checked("monitor"));
        assert!(!f.checked("force"));
        assert_eq!(f.text("ttl"), None);
    }
}
