//! The catalogue as the GraphQL layer sees it: the store behind a short-lived read cache.
//!
//! Reads are served from memory for up to `PRODUCT_CACHE_TTL_MS` (products by id, and whole pages keyed by
//! their `first`/`after`/`search`), because the database answers only about a thousand finds per second and
//! the product read path must go much faster. Every mutation through this replica empties both caches, so a
//! client sees its own writes at once. Other replicas do not hear about the write: they may serve the old
//! data until their entries expire, i.e. for at most the TTL. Set the TTL to 0 where that is unacceptable.
use std::{sync::Arc, time::Duration};

use crate::{
    cache::ReadCache,
    domain::{NewProduct, PageRequest, Product, ProductChanges, ProductId},
    store::{ProductStore, StoreError},
};

/// Enough for a large catalogue; beyond it the cache starts over (see `ReadCache::insert`).
const MAX_CACHED_PRODUCTS: usize = 10_000;
/// Distinct (first, after, search) combinations kept; searches make the key space open-ended.
const MAX_CACHED_PAGES: usize = 1_000;

pub struct Catalogue {
    store: ProductStore,
    /// `None` entries remember unknown ids too, so repeated lookups of a missing id stay cheap.
    products: ReadCache<ProductId, Option<Arc<Product>>>,
    pages: ReadCache<PageRequest, Arc<[Product]>>,
}

impl Catalogue {
    pub fn new(store: ProductStore, cache_ttl: Duration) -> Self {
        Self {
            store,
            products: ReadCache::new(cache_ttl, MAX_CACHED_PRODUCTS),
            pages: ReadCache::new(cache_ttl, MAX_CACHED_PAGES),
        }
    }

    pub fn store(&self) -> &ProductStore {
        &self.store
    }

    pub async fn get(&self, id: ProductId) -> Result<Option<Arc<Product>>, StoreError> {
        if let Some(cached) = self.products.get(&id) {
            return Ok(cached);
        }
        let generation = self.products.generation();
        let product = self.store.get(id).await?.map(Arc::new);
        self.products.insert(id, product.clone(), generation);
        Ok(product)
    }

    pub async fn list(&self, page: &PageRequest) -> Result<Arc<[Product]>, StoreError> {
        if let Some(cached) = self.pages.get(page) {
            return Ok(cached);
        }
        let generation = self.pages.generation();
        let products: Arc<[Product]> = self.store.list(page).await?.into();
        self.pages.insert(page.clone(), products.clone(), generation);
        Ok(products)
    }

    pub async fn add(&self, product: &NewProduct) -> Result<Product, StoreError> {
        let result = self.store.insert(product).await;
        self.invalidate();
        result
    }

    pub async fn update(&self, id: ProductId, changes: &ProductChanges) -> Result<Option<Product>, StoreError> {
        let result = self.store.update(id, changes).await;
        self.invalidate();
        result
    }

    pub async fn delete(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        let result = self.store.delete(id).await;
        self.invalidate();
        result
    }

    /// Called after every write, whatever its outcome: a write that failed on the way back may still have
    /// been applied.
    fn invalidate(&self) {
        self.products.invalidate_all();
        self.pages.invalidate_all();
    }
}
