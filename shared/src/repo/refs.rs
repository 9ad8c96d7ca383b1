//! Ref names: ostree's general syntax, Flatpak's `kind/id/arch/branch` refs, and the arch each ref
//! belongs to for per-arch subsummaries.

use std::fmt;
use std::str::FromStr;

use super::FormatError;

const MAX_REF_LEN: usize = 1024;
const MAX_ID_LEN: usize = 255;

/// Validates an ostree ref: `/`-separated components of `[A-Za-z0-9._-]`, none of them `.` or
/// `..`, so a ref can always be used as a relative path under `refs/heads/`.
pub fn validate_ref(name: &str) -> Result<(), FormatError> {
    let invalid = |why| Err(FormatError::InvalidRef(name.chars().take(200).collect(), why));
    if name.is_empty() || name.len() > MAX_REF_LEN {
        return invalid("empty or too long");
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return invalid("empty, '.' or '..' component");
        }
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return invalid("characters outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

/// The two kinds of installable Flatpak refs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    App,
    Runtime,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Runtime => "runtime",
        }
    }
}

/// `app/<id>/<arch>/<branch>` or `runtime/<id>/<arch>/<branch>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlatpakRef {
    pub kind: RefKind,
    pub id: String,
    pub arch: String,
    pub branch: String,
}

impl FromStr for FlatpakRef {
    type Err = FormatError;

    fn from_str(name: &str) -> Result<Self, FormatError> {
        let invalid = |why| FormatError::InvalidRef(name.chars().take(200).collect(), why);
        let parts: Vec<&str> = name.split('/').collect();
        let [kind, id, arch, branch] = parts[..] else {
            return Err(invalid("not kind/id/arch/branch"));
        };
        let kind = match kind {
            "app" => RefKind::App,
            "runtime" => RefKind::Runtime,
            _ => return Err(invalid("kind is neither app nor runtime")),
        };
        validate_app_id(id).map_err(invalid)?;
        if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid("invalid arch"));
        }
        validate_branch(branch).map_err(invalid)?;
        Ok(Self { kind, id: id.into(), arch: arch.into(), branch: branch.into() })
    }
}

impl fmt::Display for FlatpakRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.kind.as_str(), self.id, self.arch, self.branch)
    }
}

/// flatpak's `flatpak_is_valid_name`: at least three dot-separated elements of
/// `[A-Za-z_][A-Za-z0-9_-]*`, `-` only in the last one, at most 255 bytes.
pub fn validate_app_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err("app id empty or longer than 255 bytes");
    }
    let elements: Vec<&str> = id.split('.').collect();
    if elements.len() < 3 {
        return Err("app id needs at least three elements");
    }
    let last = elements.len() - 1;
    for (i, element) in elements.iter().enumerate() {
        let mut bytes = element.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && i == last));
        if !first_ok || !rest_ok {
            return Err("invalid app id element");
        }
    }
    Ok(())
}

/// flatpak's `flatpak_is_valid_branch`: `[A-Za-z0-9_][A-Za-z0-9_.-]*`.
pub fn validate_branch(branch: &str) -> Result<(), &'static str> {
    let mut bytes = branch.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err("invalid branch");
    }
    Ok(())
}

/// Refs flatpak keeps size and metadata caches for.
pub fn is_flatpak_ref(name: &str) -> bool {
    ["app/", "runtime/", "appstream/", "appstream2/"].iter().any(|p| name.starts_with(p))
}

/// flatpak's `flatpak_get_arch_for_ref`: the arch of app/runtime refs, and of appstream branches
/// (`appstream/<arch>`, `appstream2/[<subset>-]<arch>`); `None` for any other ref.
pub fn arch_for_ref(name: &str) -> Option<&str> {
    if let Some(rest) = name.strip_prefix("appstream/").or_else(|| name.strip_prefix("appstream2/")) {
        return Some(rest.rsplit_once('-').map_or(rest, |(_, arch)| arch));
    }
    if name.starts_with("app/") || name.starts_with("runtime/") {
        return name.split('/').nth(2).filter(|_| name.parse::<FlatpakRef>().is_ok());
    }
    None
}

/// The subset of an `appstream2/<subset>-<arch>` ref.
pub fn appstream_subset(name: &str) -> Option<&str> {
    name.strip_prefix("appstream2/")?.rsplit_once('-').map(|(subset, _)| subset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_flatpak_refs() {
        let r: FlatpakRef = "app/org.example.App/x86_64/stable".parse().unwrap();
        assert_eq!(
            (r.kind, r.id.as_str(), r.arch.as_str(), r.branch.as_str()),
            (RefKind::App, "org.example.App", "x86_64", "stable")
        );
        assert_eq!(r.to_string(), "app/org.example.App/x86_64/stable");
        assert!("runtime/org.freedesktop.Platform.GL.default/x86_64/23.08-extra".parse::<FlatpakRef>().is_ok());
    }

    #[test]
    fn rejects_malformed_flatpak_refs() {
        for bad in [
            "app/org.example/x86_64/stable",
            "app/org.example.App/x86_64",
            "app/org.example.App/x86_64/stable/extra",
            "extension/org.example.App/x86_64/stable",
            "app/org.-example.App/x86_64/stable",
            "app/org.example.App/x86-64/stable",
            "app/org.example.App/x86_64/.stable",
            "app/org.1example.App/x86_64/stable",
        ] {
            assert!(bad.parse::<FlatpakRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ref_validation_refuses_traversal() {
        assert!(validate_ref("app/org.example.App/x86_64/stable").is_ok());
        assert!(validate_ref("screenshots/x86_64").is_ok());
        for bad in ["", "a//b", "../x", "a/./b", "a/..", "/a", "a/", "a b", "a\0b"] {
            assert!(validate_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_arch_like_flatpak() {
        assert_eq!(arch_for_ref("app/org.example.App/aarch64/stable"), Some("aarch64"));
        assert_eq!(arch_for_ref("appstream/x86_64"), Some("x86_64"));
        assert_eq!(arch_for_ref("appstream2/verified-x86_64"), Some("x86_64"));
        assert_eq!(arch_for_ref("screenshots/x86_64"), None);
        assert_eq!(arch_for_ref("app/bad/x86_64/stable"), None);
        assert_eq!(appstream_subset("appstream2/verified-x86_64"), Some("verified"));
        assert_eq!(appstream_subset("appstream2/x86_64"), None);
    }
}
