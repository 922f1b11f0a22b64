//! The identity providers: built from the config, swapped whole on a reload, and chosen
//! per route.

use super::*;

pub(super) fn build_providers(
    cfgs: &[crate::config::auth_model::IdpConfig],
    http: &HttpClient,
    clock: &Clock,
) -> Vec<Arc<OidcProvider>> {
    cfgs.iter()
        .map(|p| {
            Arc::new(OidcProvider::with_clock(
                p.clone(),
                http.clone(),
                clock.clone(),
            ))
        })
        .collect()
}

impl Sso {
    /// The configured providers, in config order.
    pub fn providers(&self) -> Arc<Vec<Arc<OidcProvider>>> {
        self.providers.load_full()
    }

    /// Replaces the providers after a config reload. Providers are built afresh (discovery
    /// and keys are fetched again at next use); sessions of a provider that is gone end at
    /// their next request.
    pub fn set_providers(&self, cfgs: &[crate::config::auth_model::IdpConfig]) {
        self.providers
            .store(Arc::new(build_providers(cfgs, &self.http, &self.clock)));
    }

    /// A provider by id.
    pub fn provider(&self, id: &str) -> Option<Arc<OidcProvider>> {
        self.providers
            .load()
            .iter()
            .find(|p| p.cfg.id == id)
            .cloned()
    }

    /// The provider that signs users in on `route`: the pinned one, or the only one.
    pub fn provider_for(&self, route: Option<&Route>) -> Option<Arc<OidcProvider>> {
        match route.and_then(|r| r.identity_provider.as_deref()) {
            Some(id) => self.provider(id),
            None => {
                // With local, LDAP or SAML providers too, the browser chooses (the sign-in page).
                let all = self.providers.load();
                match all.as_slice() {
                    [only] if self.local_ids().is_empty() && self.saml.is_empty() => {
                        Some(only.clone())
                    }
                    _ => None,
                }
            }
        }
    }
}
