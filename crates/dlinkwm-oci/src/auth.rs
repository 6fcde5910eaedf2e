//! Credentials: `DLINKWM_REGISTRY_USERNAME` / `DLINKWM_REGISTRY_PASSWORD` for the registry named
//! by `DLINKWM_REGISTRY_HOST`, else what docker (or podman) keeps for the registry, else
//! anonymous.

use oci_client::secrets::RegistryAuth;

/// The environment variable naming the registry (`host:port`) the credentials below are for;
/// they are sent to no other registry.
pub const HOST_VARIABLE: &str = "DLINKWM_REGISTRY_HOST";
/// The environment variable naming the user (with the password's and the host's).
pub const USERNAME_VARIABLE: &str = "DLINKWM_REGISTRY_USERNAME";
/// The environment variable holding the password or token (with the user's and the host's).
pub const PASSWORD_VARIABLE: &str = "DLINKWM_REGISTRY_PASSWORD";

/// The credentials for `registry`. Docker's credential helpers are programs, so they run off
/// the executor.
pub(crate) async fn for_registry(registry: &str) -> RegistryAuth {
    if let (Ok(host), Ok(user), Ok(password)) = (
        std::env::var(HOST_VARIABLE),
        std::env::var(USERNAME_VARIABLE),
        std::env::var(PASSWORD_VARIABLE),
    ) && host == registry
        && !user.is_empty()
    {
        return RegistryAuth::Basic(user, password);
    }
    let registry = registry.to_owned();
    let lookup = move || {
        // Docker Hub's credentials are kept under its old address.
        let server = if registry == "docker.io" || registry == "index.docker.io" {
            "https://index.docker.io/v1/"
        } else {
            &registry
        };
        docker_credential::get_credential(server)
            .or_else(|_| docker_credential::get_podman_credential(server))
    };
    let found = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(lookup)
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => lookup().ok(),
    };
    match found {
        Some(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        Some(docker_credential::DockerCredential::IdentityToken(token)) => {
            RegistryAuth::Bearer(token)
        }
        None => RegistryAuth::Anonymous,
    }
}
