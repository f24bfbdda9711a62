//! Which provider serves which model, and at what price. Built once from configuration and checked then, so
//! that a missing price is a start-up error, not a surprise on a live request.
//!
//! A route is a list of targets tried in order: the first answers unless it fails with a 5xx, a connect error or
//! a timeout before any byte reached the client, then the next is tried (fallbacks; a target listed again is a
//! retry). Each target carries its own upstream model name and price, so the spend log is priced by the provider
//! that answered.

use std::collections::HashMap;
use std::sync::Arc;

use spendgate_core::pricing::{Catalog, ModelPrice, PriceConfidence};

use crate::provider::Provider;

/// One provider a route can send a request to.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<dyn Provider>,
    /// The provider's name, shared by every spend event of the target (no allocation per request).
    pub provider_name: Arc<str>,
    /// The name the upstream knows the model by (may differ from the name clients use).
    pub upstream_model: String,
    pub price: Arc<ModelPrice>,
    pub confidence: PriceConfidence,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("provider", &self.provider.name())
            .field("model", &self.upstream_model)
            .finish()
    }
}

/// The targets of one model, in the order they are tried. Never empty.
#[derive(Debug)]
pub struct Route {
    /// The model name spend logs record: the name the route was configured under, so that
    /// `openai/gpt-4o-mini` and `gpt-4o-mini` add up as one model.
    pub model: Arc<str>,
    pub targets: Vec<Target>,
}

impl Route {
    pub fn first(&self) -> &Target {
        &self.targets[0]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "model '{model}' (provider '{provider}') has no price in the catalog; add a [[pricing.model]] entry (or a \
         price in the provider's prices) for it, or set unknown_models = \"fallback\" with fallback prices"
    )]
    NoPrice { provider: String, model: String },
    #[error(
        "the route for model '{model}' has no targets; list at least one provider in its targets"
    )]
    NoTargets { model: String },
}

#[derive(Debug, Default)]
pub struct Routes {
    /// Shared, so looking a route up on the request path copies a pointer, not the route.
    by_model: HashMap<String, Arc<Route>>,
    /// Serves models no route names, when configured; they are priced by the catalog's fallback.
    default: Option<Arc<dyn Provider>>,
    /// Every configured provider by name: a catalog model that no route names goes to the provider the catalog
    /// lists it under, and `provider/model` to the named provider.
    providers: HashMap<String, Arc<dyn Provider>>,
    catalog: Option<Arc<Catalog>>,
}

impl Routes {
    pub fn new(catalog: Arc<Catalog>) -> Routes {
        Routes {
            by_model: HashMap::new(),
            default: None,
            providers: HashMap::new(),
            catalog: Some(catalog),
        }
    }

    /// A target for clients' `model` on `provider`, asked for as `upstream_model` (default: the same name) and
    /// priced by `price` when given, else by the catalog entry of the client's model name, else of the upstream
    /// model name, else by the catalog's fallback (flagged low-confidence).
    pub fn target(
        &self,
        model: &str,
        provider: Arc<dyn Provider>,
        upstream_model: Option<&str>,
        price: Option<ModelPrice>,
    ) -> Result<Target, RouteError> {
        let upstream = upstream_model.unwrap_or(model);
        let no_price = || RouteError::NoPrice {
            provider: provider.name().to_string(),
            model: model.to_string(),
        };
        let (price, confidence) = match price {
            Some(p) => (p, PriceConfidence::Exact),
            None => {
                let catalog = self.catalog.as_ref().ok_or_else(no_price)?;
                match catalog.get(model).or_else(|| catalog.get(upstream)) {
                    Some(p) => (p.clone(), PriceConfidence::Exact),
                    None => {
                        let l = catalog
                            .lookup(provider.name(), model)
                            .ok_or_else(no_price)?;
                        (l.price.into_owned(), l.confidence)
                    }
                }
            }
        };
        Ok(Target {
            provider_name: Arc::from(provider.name()),
            provider,
            upstream_model: upstream.to_string(),
            price: Arc::new(price),
            confidence,
        })
    }

    /// Routes `model` to `provider` alone, priced from the catalog.
    pub fn add(
        &mut self,
        model: &str,
        provider: Arc<dyn Provider>,
        upstream_model: Option<&str>,
    ) -> Result<(), RouteError> {
        let target = self.target(model, provider, upstream_model, None)?;
        self.insert(model, vec![target])
    }

    /// Routes `model` to `targets`, tried in order. Replaces an earlier route of the same model.
    pub fn insert(&mut self, model: &str, targets: Vec<Target>) -> Result<(), RouteError> {
        if targets.is_empty() {
            return Err(RouteError::NoTargets {
                model: model.to_string(),
            });
        }
        self.by_model.insert(
            model.to_string(),
            Arc::new(Route {
                model: Arc::from(model),
                targets,
            }),
        );
        Ok(())
    }

    pub fn set_default(&mut self, provider: Arc<dyn Provider>) {
        self.default = Some(provider);
    }

    /// Makes `provider` reachable by its name: `name/model`, and catalog models listed under `name`.
    pub fn add_provider(&mut self, name: &str, provider: Arc<dyn Provider>) {
        self.providers.insert(name.to_string(), provider);
    }

    /// The route for a model, in this order: a configured route of that name; `provider/model` (the form LiteLLM
    /// and OpenRouter users send) as the route of `model` when its first target is that provider. With a default
    /// provider configured, any model the catalog can price is served too: `provider/model` by the named
    /// provider, a catalog model by the provider the catalog lists it under when that one is configured (an
    /// Anthropic model does not go to an OpenAI default), anything else by the default.
    pub fn get(&self, model: &str) -> Option<Arc<Route>> {
        if let Some(r) = self.by_model.get(model) {
            return Some(Arc::clone(r));
        }
        if let Some((prefix, rest)) = model.split_once('/') {
            if let Some(provider) = self.providers.get(prefix) {
                if let Some(r) = self.by_model.get(rest) {
                    if *r.first().provider_name == *prefix {
                        return Some(Arc::clone(r));
                    }
                }
                // Only a default provider opens models that no route names; without one the operator's list of
                // models is the whole offer.
                self.default.as_ref()?;
                return self.route_on(rest, provider);
            }
        }
        let default = self.default.as_ref()?;
        let owner = self
            .catalog
            .as_ref()
            .and_then(|c| c.get(model))
            .and_then(|m| self.providers.get(&m.provider));
        self.route_on(model, owner.unwrap_or(default))
    }

    /// The catalog the routes were priced from.
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.clone()
    }

    /// A provider that serves `endpoint`, for calls that name no routed model (a moderation without `model`):
    /// the default provider, else the provider named `openai`, else the first by name.
    pub fn provider_for(&self, endpoint: crate::provider::Endpoint) -> Option<Arc<dyn Provider>> {
        if let Some(d) = self.default.as_ref().filter(|d| d.speaks(endpoint)) {
            return Some(Arc::clone(d));
        }
        let mut named: Vec<(&String, &Arc<dyn Provider>)> = self
            .providers
            .iter()
            .filter(|(_, p)| p.speaks(endpoint))
            .collect();
        named.sort_by_key(|(n, _)| (n.as_str() != "openai", n.as_str()));
        named.first().map(|(_, p)| Arc::clone(p))
    }

    /// A route of one target: `model` on `provider`, priced from the catalog (or refused when it cannot be).
    fn route_on(&self, model: &str, provider: &Arc<dyn Provider>) -> Option<Arc<Route>> {
        let target = self.target(model, Arc::clone(provider), None, None).ok()?;
        Some(Arc::new(Route {
            model: Arc::from(model),
            targets: vec![target],
        }))
    }

    /// Every routed model name with its route, sorted by name, for `GET /v1/models`.
    pub fn list(&self) -> Vec<(&str, &Route)> {
        let mut v: Vec<_> = self
            .by_model
            .iter()
            .map(|(m, r)| (m.as_str(), r.as_ref()))
            .collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }
}

/// The routes in force, replaced whole when prices are reloaded (`spendgate` on SIGHUP or
/// `POST /api/v1/pricing/reload`). A request takes the routes of the moment it arrives and keeps them to its end,
/// so a reload never changes the bill of a request in flight, and a spend log keeps the prices it was written with.
#[derive(Debug)]
pub struct SharedRoutes(std::sync::RwLock<Arc<Routes>>);

impl SharedRoutes {
    pub fn new(routes: Routes) -> SharedRoutes {
        SharedRoutes(std::sync::RwLock::new(Arc::new(routes)))
    }

    /// The routes in force now.
    pub fn current(&self) -> Arc<Routes> {
        // A writer only swaps a pointer, so a poisoned lock still holds whole routes.
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `routes` in force; returns the ones they replace.
    pub fn replace(&self, routes: Routes) -> Arc<Routes> {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *slot, Arc::new(routes))
    }
}
