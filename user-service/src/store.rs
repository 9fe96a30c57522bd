//! The `users` collection: unique indexes created at startup, documents ↔ domain types.

use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, doc},
    error::{ErrorKind, WriteFailure},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use crate::domain::{Email, Role, Username};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDocument {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    /// Lowercased username: the unique index is on this, so `Alice` and `alice` collide.
    pub username_key: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenField {
    Email,
    Username,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(mongodb::error::Error),
    #[error("{0:?} already taken")]
    Duplicate(TakenField),
    #[error("database error: {0}")]
    Other(mongodb::error::Error),
}

impl From<mongodb::error::Error> for StoreError {
    fn from(error: mongodb::error::Error) -> Self {
        if platform::mongo::is_unavailable(&error) { Self::Unavailable(error) } else { Self::Other(error) }
    }
}

fn duplicate_key_message(error: &mongodb::error::Error) -> Option<&str> {
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == 11000 => Some(&write.message),
        ErrorKind::Command(command) if command.code == 11000 => Some(&command.message),
        _ => None,
    }
}

#[derive(Clone)]
pub struct UserStore {
    database: Database,
    users: Collection<UserDocument>,
}

pub struct NewUser<'a> {
    pub username: &'a Username,
    pub email: &'a Email,
    pub password_hash: String,
    pub role: Role,
}

impl UserStore {
    pub fn new(database: Database) -> Self {
        let users = database.collection("users");
        Self { database, users }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = |field: &str, name: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1 })
                .options(IndexOptions::builder().unique(true).name(name.to_owned()).build())
                .build()
        };
        self.users.create_indexes([unique("email", "email_unique"), unique("usernameKey", "username_unique")]).await?;
        Ok(())
    }

    /// Inserts a user; the unique indexes make concurrent duplicates fail with `Duplicate`.
    pub async fn insert(&self, user: NewUser<'_>) -> Result<String, StoreError> {
        let now = bson::DateTime::now();
        let document = UserDocument {
            id: uuid::Uuid::now_v7().to_string(),
            username: user.username.as_str().to_owned(),
            username_key: user.username.key(),
            email: user.email.as_str().to_owned(),
            password_hash: user.password_hash,
            role: user.role,
            created_at: now,
            updated_at: now,
        };
        match self.users.insert_one(&document).await {
            Ok(_) => Ok(document.id),
            Err(error) => match duplicate_key_message(&error) {
                Some(message) if message.contains("email") => Err(StoreError::Duplicate(TakenField::Email)),
                Some(_) => Err(StoreError::Duplicate(TakenField::Username)),
                None => Err(error.into()),
            },
        }
    }

    pub async fn find_by_email(&self, email: &Email) -> Result<Option<UserDocument>, StoreError> {
        Ok(self.users.find_one(doc! { "email": email.as_str() }).await?)
    }

    pub async fn find_by_id(&self, id: &str) -> Result<Option<UserDocument>, StoreError> {
        Ok(self.users.find_one(doc! { "_id": id }).await?)
    }

    /// The account holding `username` (case-insensitively, as the unique index compares).
    pub async fn find_by_username(&self, username: &Username) -> Result<Option<UserDocument>, StoreError> {
        Ok(self.users.find_one(doc! { "usernameKey": username.key() }).await?)
    }

    /// Creates the admin account, or brings an existing account with that email to role admin
    /// with the configured password. `Duplicate(Username)` when no account has that email and
    /// another account holds the username.
    pub async fn upsert_admin(
        &self,
        email: &Email,
        username: &Username,
        password_hash: String,
    ) -> Result<(), StoreError> {
        let now = bson::DateTime::now();
        self.users
            .update_one(
                doc! { "email": email.as_str() },
                doc! {
                    "$set": { "passwordHash": password_hash, "role": Role::Admin.as_str(), "updatedAt": now },
                    "$setOnInsert": {
                        "_id": uuid::Uuid::now_v7().to_string(),
                        "username": username.as_str(),
                        "usernameKey": username.key(),
                        "createdAt": now,
                    },
                },
            )
            .upsert(true)
            .await
            .map_err(|error| match duplicate_key_message(&error) {
                // Only an insert can collide, and the filter is the email: so the username is taken.
                // (A replica inserting the same email at the same moment collides on the email: retry.)
                Some(message) if !message.contains("email") => StoreError::Duplicate(TakenField::Username),
                _ => error.into(),
            })?;
        Ok(())
    }
}
