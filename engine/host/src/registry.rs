//! The registry half of the `image` import: list a repository's tags and delete manifests
//! (`image.list-tags`, `image.delete-manifest`) for plugins that declare `registry`, each call
//! checked against the step's `allow.net` and its credentials read from the step's secrets.
//! Unlike builds these need no BuildKit: the host talks to the registry itself
//! (`kiln_oci::distribution`, on a blocking thread).

use std::sync::Arc;

use kiln_oci::distribution::{DistributionError, Repository};
use kiln_oci::{Reference, RegistryAuth};

use crate::access::StepAccess;
use crate::bindings::image as wit;
use crate::image::{error, from_access};

/// What one step's registry calls may reach.
pub(crate) struct RegistryScope {
    pub(crate) access: Arc<StepAccess>,
    /// Whether the plugin declares the `registry` capability.
    pub(crate) declared: bool,
}

fn from_distribution(e: DistributionError) -> wit::Error {
    use wit::ErrorKind as K;
    let kind = match &e {
        DistributionError::Invalid(..) | DistributionError::DeleteDisabled { .. } => K::Invalid,
        DistributionError::Auth { .. } => K::Auth,
        DistributionError::Unreachable { .. } => K::Unreachable,
        DistributionError::Failed { .. } => K::Failed,
    };
    error(kind, e.to_string())
}

impl RegistryScope {
    /// Checks the capability, the repository's form and its registry's grant, and resolves the
    /// credentials; returns the client.
    async fn repository(
        &self,
        repository: &str,
        auth: wit::RegistryAuth,
    ) -> Result<Repository, wit::Error> {
        if !self.declared {
            return Err(error(
                wit::ErrorKind::Denied,
                "the plugin does not declare the `registry` capability, so it may not list or delete images\n  hint: declare `Capability::Registry` in the plugin's `info()`",
            ));
        }
        let reference = Reference::parse(repository).map_err(|e| {
            error(
                wit::ErrorKind::Invalid,
                format!("repository `{repository}`: {e}"),
            )
        })?;
        self.access
            .check_net(&reference.registry_host(), "registry")
            .map_err(from_access)?;
        let auth = match auth {
            wit::RegistryAuth::Anonymous => RegistryAuth::Anonymous,
            wit::RegistryAuth::Basic(b) => RegistryAuth::basic(
                b.username,
                self.access
                    .secret(&b.password_secret, "registry password")
                    .map_err(from_access)?,
            ),
            wit::RegistryAuth::DockerConfig => {
                let registry = reference.registry().to_owned();
                tokio::task::spawn_blocking(move || {
                    kiln_oci::DockerConfig::load_default()?.lookup(&registry)
                })
                .await
                .map_err(|e| error(wit::ErrorKind::Failed, format!("credential lookup: {e}")))?
                .map_err(|e| error(wit::ErrorKind::Invalid, e.to_string()))?
            }
        };
        Repository::new(repository, auth).map_err(from_distribution)
    }

    pub(crate) async fn list_tags(
        &self,
        repository: String,
        auth: wit::RegistryAuth,
    ) -> Result<Vec<wit::TagInfo>, wit::Error> {
        let repo = self.repository(&repository, auth).await?;
        let tags = tokio::task::spawn_blocking(move || repo.tags())
            .await
            .map_err(|e| error(wit::ErrorKind::Failed, format!("the listing task: {e}")))?
            .map_err(from_distribution)?;
        Ok(tags
            .into_iter()
            .map(|t| wit::TagInfo {
                tag: t.tag,
                digest: t.digest,
                created: t.created,
            })
            .collect())
    }

    pub(crate) async fn delete_manifest(
        &self,
        repository: String,
        digest: String,
        auth: wit::RegistryAuth,
    ) -> Result<bool, wit::Error> {
        let repo = self.repository(&repository, auth).await?;
        let deleted = tokio::task::spawn_blocking(move || repo.delete(&digest))
            .await
            .map_err(|e| error(wit::ErrorKind::Failed, format!("the delete task: {e}")))?
            .map_err(from_distribution)?;
        Ok(deleted)
    }
}
