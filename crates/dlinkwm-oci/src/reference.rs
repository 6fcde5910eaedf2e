//! Plugin references: `oci://registry/repository:tag` or `…@sha256:digest`.

use std::fmt;
use std::str::FromStr;

use crate::OciError;

/// The scheme that marks a plugin reference where a path could be.
pub const SCHEME: &str = "oci://";

/// A plugin in a registry: `REGISTRY/REPOSITORY:TAG` or `REGISTRY/REPOSITORY@sha256:…`,
/// written with or without `oci://` in front. A reference without a registry is Docker Hub's, as
/// in docker; without a tag, `latest`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    oci: oci_client::Reference,
}

impl PluginRef {
    /// The reference as `oci-client` knows it.
    pub(crate) fn oci(&self) -> &oci_client::Reference {
        &self.oci
    }

    /// The registry (`host:port`).
    pub fn registry_host(&self) -> &str {
        self.oci.resolve_registry()
    }

    /// The repository.
    pub fn repository(&self) -> &str {
        self.oci.repository()
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.oci.tag()
    }

    /// The pinned manifest digest (`sha256:…`), if any: such a reference never moves.
    pub fn digest(&self) -> Option<&str> {
        self.oci.digest()
    }

    /// Whether the reference is pinned to a digest.
    pub fn is_pinned(&self) -> bool {
        self.digest().is_some()
    }

    /// This reference pinned to `digest` (for pulling exactly what a tag pointed to).
    ///
    /// # Errors
    /// [`OciError::Reference`] when `digest` is not `sha256:` and 64 hex digits.
    pub fn pinned(&self, digest: &str) -> Result<PluginRef, OciError> {
        check_digest(digest).map_err(|reason| OciError::Reference {
            reference: format!("{self}@{digest}"),
            reason,
        })?;
        Ok(PluginRef {
            oci: oci_client::Reference::with_digest(
                self.oci.registry().to_owned(),
                self.oci.repository().to_owned(),
                digest.to_owned(),
            ),
        })
    }

    /// This reference's repository with `tag`.
    ///
    /// # Errors
    /// [`OciError::Reference`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<PluginRef, OciError> {
        // The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
        let valid = tag.len() <= 128
            && tag.bytes().enumerate().all(|(at, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (at > 0 && matches!(b, b'.' | b'-'))
            })
            && !tag.is_empty();
        if !valid {
            return Err(OciError::Reference {
                reference: tag.chars().take(140).collect(),
                reason: "a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`".to_owned(),
            });
        }
        format!("{}/{}:{tag}", self.oci.registry(), self.oci.repository()).parse()
    }

    /// Whether the registry is this machine (reached over plain HTTP without asking).
    pub fn is_loopback(&self) -> bool {
        let registry = self.registry_host();
        let host = match registry.rsplit_once(':') {
            // `[::1]:5000`, `localhost:5000`; a bare IPv6 address has no brackets.
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => registry,
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

impl FromStr for PluginRef {
    type Err = OciError;

    fn from_str(text: &str) -> Result<Self, OciError> {
        let bad = |reason: String| OciError::Reference {
            reference: text.to_owned(),
            reason,
        };
        let bare = text.strip_prefix(SCHEME).unwrap_or(text);
        if bare.is_empty() || bare.len() > 1024 {
            return Err(bad("must be 1 to 1024 characters".to_owned()));
        }
        let oci: oci_client::Reference = bare.parse().map_err(|error| bad(format!("{error}")))?;
        if let Some(digest) = oci.digest() {
            check_digest(digest).map_err(bad)?;
        }
        Ok(PluginRef { oci })
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.oci.whole())
    }
}

impl fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginRef({self})")
    }
}

/// Checks that `digest` is `sha256:` and 64 lowercase hex digits: the only digests this crate
/// accepts, and so the only ones that ever become a file name in the store.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let shown: String = digest.chars().take(80).collect();
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!("`{shown}` is not a sha256 digest"));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "`{shown}` is not `sha256:` and 64 lowercase hex digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_digests_and_the_scheme() {
        let tagged: PluginRef = "oci://localhost:5000/plugins/hello:v1".parse().unwrap();
        assert_eq!(tagged.registry_host(), "localhost:5000");
        assert_eq!(tagged.repository(), "plugins/hello");
        assert_eq!(tagged.tag(), Some("v1"));
        assert!(!tagged.is_pinned());
        assert!(tagged.is_loopback());
        assert_eq!(tagged.to_string(), "oci://localhost:5000/plugins/hello:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = tagged.pinned(&digest).unwrap();
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        let parsed: PluginRef = pinned.to_string().parse().unwrap();
        assert_eq!(parsed, pinned);
        assert_eq!(
            tagged.with_tag("stable").unwrap().to_string(),
            "oci://localhost:5000/plugins/hello:stable"
        );
        for bad in ["", "a/b", "-x", "a@b", &"t".repeat(129)] {
            assert!(tagged.with_tag(bad).is_err(), "{bad}");
        }
        let remote: PluginRef = "ghcr.io/acme/hello:1".parse().unwrap();
        assert!(!remote.is_loopback());
        let spoof: PluginRef = "localhost.evil.com:5000/x:1".parse().unwrap();
        assert!(!spoof.is_loopback());
    }

    #[test]
    fn refuses_malformed_references_and_digests() {
        for text in [
            "",
            "oci://",
            "oci://localhost:5000/UPPER:tag",
            "oci://localhost:5000/x@sha256:1234",
            "oci://localhost:5000/x@md5:d41d8cd98f00b204e9800998ecf8427e",
        ] {
            let error = text.parse::<PluginRef>().unwrap_err();
            assert!(
                matches!(error, OciError::Reference { .. }),
                "{text}: {error}"
            );
        }
        let long = format!("oci://localhost:5000/{}", "a/".repeat(600));
        assert!(long.parse::<PluginRef>().is_err());
        let tagged: PluginRef = "localhost:5000/x:1".parse().unwrap();
        for digest in [
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(tagged.pinned(digest).is_err(), "{digest}");
        }
    }
}
