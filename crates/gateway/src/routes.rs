//! Which provider serves which model, and at what price. Built once from configuration and checked then, so
//! that a missing price is a start-up error, not a surprise on a live request.

use std::collections::HashMap;
use std::sync::Arc;

use spendgate_core::pricing::{Catalog, ModelPrice, PriceConfidence};

use crate::provider::Provider;

pub struct Route {
    pub provider: Arc<dyn Provider>,
    /// The provider's name, shared by every spend event of the route (no allocation per request).
    pub provider_name: Arc<str>,
    /// The name the upstream knows the model by (may differ from the name clients use).
    pub upstream_model: String,
    pub price: Arc<ModelPrice>,
    pub confidence: PriceConfidence,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("provider", &self.provider.name())
            .field("model", &self.upstream_model)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "model '{model}' (provider '{provider}') has no price in the catalog; add a [[pricing]] entry for it \
         or set unknown_models = \"fallback\" with fallback prices"
    )]
    NoPrice { provider: String, model: String },
}

#[derive(Debug, Default)]
pub struct Routes {
    /// Shared, so looking a route up on the request path copies a pointer, not the route.
    by_model: HashMap<String, Arc<Route>>,
    /// Serves models no route names, when configured; they are priced by the catalog's fallback.
    default: Option<Arc<dyn Provider>>,
    catalog: Option<Arc<Catalog>>,
}

impl Routes {
    pub fn new(catalog: Arc<Catalog>) -> Routes {
        Routes {
            by_model: HashMap::new(),
            default: None,
            catalog: Some(catalog),
        }
    }

    /// Routes `model` to `provider`, priced from the catalog (or its fallback, flagged low-confidence).
    pub fn add(
        &mut self,
        model: &str,
        provider: Arc<dyn Provider>,
        upstream_model: Option<&str>,
    ) -> Result<(), RouteError> {
        let catalog = self.catalog.as_ref().ok_or_else(|| RouteError::NoPrice {
            provider: provider.name().to_string(),
            model: model.to_string(),
        })?;
        let lookup = catalog
            .lookup(provider.name(), model)
            .ok_or_else(|| RouteError::NoPrice {
                provider: provider.name().to_string(),
                model: model.to_string(),
            })?;
        self.by_model.insert(
            model.to_string(),
            Arc::new(Route {
                provider_name: Arc::from(provider.name()),
                provider,
                upstream_model: upstream_model.unwrap_or(model).to_string(),
                price: Arc::new(lookup.price.into_owned()),
                confidence: lookup.confidence,
            }),
        );
        Ok(())
    }

    pub fn set_default(&mut self, provider: Arc<dyn Provider>) {
        self.default = Some(provider);
    }

    /// The route for a model: a configured one, or the default provider's when the catalog can price it.
    pub fn get(&self, model: &str) -> Option<Arc<Route>> {
        if let Some(r) = self.by_model.get(model) {
            return Some(Arc::clone(r));
        }
        let provider = self.default.as_ref()?;
        let lookup = self.catalog.as_ref()?.lookup(provider.name(), model)?;
        Some(Arc::new(Route {
            provider_name: Arc::from(provider.name()),
            provider: Arc::clone(provider),
            upstream_model: model.to_string(),
            price: Arc::new(lookup.price.into_owned()),
            confidence: lookup.confidence,
        }))
    }

    /// Model names and their providers, sorted, for `GET /v1/models`.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .by_model
            .iter()
            .map(|(m, r)| (m.clone(), r.provider.name().to_string()))
            .collect();
        v.sort();
        v
    }
}
