//! The catalogue a fresh database starts with: the four products of the original shop, ids "1".."4".

/// A product written once, on the first start against an empty database.
#[derive(Debug, Clone, Copy)]
pub struct SeedProduct {
    pub id: i64,
    pub name: &'static str,
    pub price_cents: i64,
    pub description: Option<&'static str>,
}

pub const SEED_PRODUCTS: [SeedProduct; 4] = [
    SeedProduct {
        id: 1,
        name: "Smartphone",
        price_cents: 89_999,
        description: Some("Dernier modèle de smartphone haut de gamme"),
    },
    SeedProduct {
        id: 2,
        name: "Ordinateur portable",
        price_cents: 129_999,
        description: Some("Ordinateur portable pour professionnels"),
    },
    SeedProduct { id: 3, name: "Tablette", price_cents: 49_999, description: Some("Tablette puissante et légère") },
    SeedProduct {
        id: 4,
        name: "Écouteurs sans fil",
        price_cents: 14_999,
        description: Some("Écouteurs avec réduction de bruit active"),
    },
];
