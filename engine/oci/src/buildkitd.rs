//! The standalone driver: a `buildkitd` on a unix socket or TCP (plain or TLS), the way
//! `buildctl` and buildx's `remote` driver reach one.
//!
//! buildkitd keeps no image store Kiln could push from later, so images are exported by
//! BuildKit's `image` exporter as they are built: with `push`, straight to every tag's registry
//! (credentials come from the session, see `buildkit::session`); without, the build is checked
//! and cached only. Registries on loopback may be plain HTTP (`registry.insecure`), as
//! dockerd allows for 127.0.0.0/8.

use std::collections::HashMap;

use crate::buildkit::{self, Target};
use crate::{BuildRequest, BuildkitAddr, Built, OciError, ProgressFn, Pushed, Reference};

pub(crate) struct BuildkitdDriver {
    target: Target,
    addr: BuildkitAddr,
}

/// Whether a registry host is on this machine (plain HTTP allowed, as dockerd does).
fn is_loopback(reference: &Reference) -> bool {
    let host = reference.registry_host();
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host.as_str(),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl BuildkitdDriver {
    pub(crate) fn new(addr: BuildkitAddr, target: Target) -> BuildkitdDriver {
        BuildkitdDriver { target, addr }
    }

    pub(crate) async fn build(
        &self,
        request: &BuildRequest,
        progress: ProgressFn<'_>,
    ) -> Result<Built, OciError> {
        for spec in request.cache_from.iter().chain(&request.cache_to) {
            if spec.kind == "local" {
                return Err(OciError::Unsupported {
                    what: "a `type=local` cache".to_string(),
                    hint: "BuildKit reads and writes local caches through a content store in the client's session, which Kiln does not serve; use `type=registry,ref=…` (shared by every machine), or Kiln's `cache` step for directories".to_string(),
                });
            }
        }
        progress(&format!("building on {}", self.addr));
        let tags: Vec<String> = request.tags.iter().map(|t| t.to_string()).collect();
        let mut attrs = HashMap::new();
        if !tags.is_empty() {
            attrs.insert("name".to_string(), tags.join(","));
        }
        attrs.insert("push".to_string(), request.push.to_string());
        if request.push && request.tags.iter().all(is_loopback) {
            attrs.insert("registry.insecure".to_string(), "true".to_string());
        }
        let solve = buildkit::Solve::new(request, "image", attrs).await?;
        let response = self.target.solve(solve, progress).await?;
        let manifest = response.get("containerimage.digest").cloned();
        let image_id = response
            .get("containerimage.config.digest")
            .or(manifest.as_ref())
            .cloned()
            .ok_or_else(|| {
                OciError::Other("buildkitd did not report the image it built".to_string())
            })?;
        let pushed = match (request.push, manifest) {
            (false, _) => None,
            (true, Some(digest)) => {
                let mut references: Vec<String> = request
                    .tags
                    .iter()
                    .map(|t| format!("{}@{digest}", t.name()))
                    .collect();
                references.dedup();
                references.extend(tags.iter().cloned());
                for r in &references {
                    progress(&format!("pushed {r}"));
                }
                Some(Pushed { digest, references })
            }
            (true, None) => {
                return Err(OciError::PushFailed {
                    target: tags.join(", "),
                    detail: "buildkitd did not report the manifest digest it pushed".to_string(),
                });
            }
        };
        Ok(Built {
            image_id,
            tags,
            size: 0,
            pushed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for (r, want) in [
            ("127.0.0.1:5000/a:1", true),
            ("localhost:5000/a", true),
            ("[::1]:5000/a", true),
            ("registry.example.com/a", false),
            ("10.0.0.1:5000/a", false),
        ] {
            let reference = Reference::parse(r).expect("reference");
            assert_eq!(is_loopback(&reference), want, "{r}");
        }
    }
}
