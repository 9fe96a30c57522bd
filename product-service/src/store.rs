//! The `products` and `counters` collections: indexes and seeding at startup, documents ↔ domain types.
//!
//! A product document is `{_id: "<seq>", seq, name, priceCents, description?, createdAt, updatedAt}`: the id
//! is the sequence number as text, so a lookup by id is a lookup by `_id`, and `seq` (unique index) gives the
//! listing order. New sequence numbers come from the `counters` document `{_id: "products", seq}`, which only
//! ever grows, so ids are never handed out twice, not even after deletes.

use futures::TryStreamExt as _;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc},
    options::{IndexOptions, ReturnDocument},
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{DescriptionChange, NewProduct, PageRequest, Price, Product, ProductChanges, ProductId},
    seed::SeedProduct,
};

/// `_id` of the counter document that hands out product sequence numbers.
const PRODUCT_COUNTER: &str = "products";
/// `_id` of the marker document that says the seed products were written once; it is never removed, so a
/// seed product an admin deletes stays deleted across restarts.
const SEED_MARKER: &str = "seed";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductDocument {
    #[serde(rename = "_id")]
    id: String,
    seq: i64,
    name: String,
    price_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    created_at: bson::DateTime,
    updated_at: bson::DateTime,
}

impl TryFrom<ProductDocument> for Product {
    type Error = StoreError;

    fn try_from(document: ProductDocument) -> Result<Self, StoreError> {
        let timestamp = |at: bson::DateTime| {
            at.try_to_rfc3339_string()
                .map_err(|error| StoreError::Corrupt(format!("product {}: timestamp {at:?}: {error}", document.id)))
        };
        Ok(Self {
            id: ProductId::from_seq(document.seq),
            price: Price::from_cents(document.price_cents),
            created_at: timestamp(document.created_at)?,
            updated_at: timestamp(document.updated_at)?,
            name: document.name,
            description: document.description,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(mongodb::error::Error),
    #[error("database error: {0}")]
    Other(mongodb::error::Error),
    /// A document the service cannot make sense of: a bug or a manual edit, never the client's fault.
    #[error("unexpected data: {0}")]
    Corrupt(String),
}

impl From<mongodb::error::Error> for StoreError {
    fn from(error: mongodb::error::Error) -> Self {
        if platform::mongo::is_unavailable(&error) { Self::Unavailable(error) } else { Self::Other(error) }
    }
}

#[derive(Clone)]
pub struct ProductStore {
    database: Database,
    products: Collection<ProductDocument>,
    counters: Collection<Document>,
}

impl ProductStore {
    pub fn new(database: Database) -> Self {
        let products = database.collection("products");
        let counters = database.collection("counters");
        Self { database, products, counters }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    /// `seq` orders every listing and must never repeat.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let seq = IndexModel::builder()
            .keys(doc! { "seq": 1 })
            .options(IndexOptions::builder().unique(true).name("seq_unique".to_owned()).build())
            .build();
        self.products.create_index(seq).await?;
        Ok(())
    }

    /// Writes the seed products unless a previous start already did; returns whether it wrote them.
    ///
    /// Safe with several replicas starting at once: each seed is an upsert by `_id` that only sets fields on
    /// insert, so racing replicas write the same documents once. A replica that loses an upsert race may get a
    /// duplicate-key error; the caller retries and then finds the documents in place. The marker is written
    /// last, so seeding interrupted half-way is completed on the next start. (One narrow window remains: a seed
    /// deleted by an admin while another replica is between its marker check and its upserts comes back.)
    pub async fn seed_once(&self, seeds: &[SeedProduct]) -> Result<bool, StoreError> {
        if self.counters.find_one(doc! { "_id": SEED_MARKER }).await?.is_some() {
            return Ok(false);
        }
        let now = bson::DateTime::now();
        for seed in seeds {
            let mut fields = doc! {
                "seq": seed.id,
                "name": seed.name,
                "priceCents": seed.price_cents,
                "createdAt": now,
                "updatedAt": now,
            };
            if let Some(description) = seed.description {
                fields.insert("description", description);
            }
            self.products
                .update_one(doc! { "_id": seed.id.to_string() }, doc! { "$setOnInsert": fields })
                .upsert(true)
                .await?;
        }
        // Ids handed out later must start above the seeds.
        let highest = seeds.iter().map(|seed| seed.id).max().unwrap_or(0);
        self.counters
            .update_one(doc! { "_id": PRODUCT_COUNTER }, doc! { "$max": { "seq": highest } })
            .upsert(true)
            .await?;
        self.counters
            .update_one(doc! { "_id": SEED_MARKER }, doc! { "$setOnInsert": { "at": now } })
            .upsert(true)
            .await?;
        Ok(true)
    }

    pub async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.products.find_one(doc! { "_id": id.to_string() }).await?.map(Product::try_from).transpose()
    }

    /// One page in id order. The search term is matched as a case-insensitive literal substring of the name
    /// or the description (it is regex-escaped, so user text is never interpreted as a pattern).
    pub async fn list(&self, page: &PageRequest) -> Result<Vec<Product>, StoreError> {
        let mut filter = doc! {};
        if let Some(after) = page.after {
            filter.insert("seq", doc! { "$gt": after.seq() });
        }
        if let Some(term) = &page.search {
            let contains = doc! { "$regex": term.literal_pattern(), "$options": "i" };
            filter.insert("$or", vec![doc! { "name": contains.clone() }, doc! { "description": contains }]);
        }
        let documents: Vec<ProductDocument> =
            self.products.find(filter).sort(doc! { "seq": 1 }).limit(page.first).await?.try_collect().await?;
        documents.into_iter().map(Product::try_from).collect()
    }

    pub async fn insert(&self, product: &NewProduct) -> Result<Product, StoreError> {
        let seq = self.next_seq().await?;
        let now = bson::DateTime::now();
        let document = ProductDocument {
            id: seq.to_string(),
            seq,
            name: product.name.as_str().to_owned(),
            price_cents: product.price.cents(),
            description: product.description.as_ref().map(|description| description.as_str().to_owned()),
            created_at: now,
            updated_at: now,
        };
        self.products.insert_one(&document).await?;
        Product::try_from(document)
    }

    /// Applies only the given changes; `None` when no product has that id.
    pub async fn update(&self, id: ProductId, changes: &ProductChanges) -> Result<Option<Product>, StoreError> {
        let mut set = doc! { "updatedAt": bson::DateTime::now() };
        if let Some(name) = &changes.name {
            set.insert("name", name.as_str());
        }
        if let Some(price) = changes.price {
            set.insert("priceCents", price.cents());
        }
        let mut update = Document::new();
        match &changes.description {
            DescriptionChange::Keep => {}
            DescriptionChange::Set(description) => {
                set.insert("description", description.as_str());
            }
            DescriptionChange::Clear => {
                update.insert("$unset", doc! { "description": "" });
            }
        }
        update.insert("$set", set);
        self.products
            .find_one_and_update(doc! { "_id": id.to_string() }, update)
            .return_document(ReturnDocument::After)
            .await?
            .map(Product::try_from)
            .transpose()
    }

    /// Removes the product and returns it as it was; `None` when no product has that id.
    pub async fn delete(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.products.find_one_and_delete(doc! { "_id": id.to_string() }).await?.map(Product::try_from).transpose()
    }

    /// The next product sequence number: an atomic increment, so concurrent inserts on any replica never share
    /// one.
    async fn next_seq(&self) -> Result<i64, StoreError> {
        let counter = self
            .counters
            .find_one_and_update(doc! { "_id": PRODUCT_COUNTER }, doc! { "$inc": { "seq": 1_i64 } })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the product counter upsert returned no document".into()))?;
        match counter.get("seq") {
            Some(bson::Bson::Int64(seq)) => Ok(*seq),
            Some(bson::Bson::Int32(seq)) => Ok(i64::from(*seq)),
            other => Err(StoreError::Corrupt(format!("product counter holds {other:?}"))),
        }
    }
}
