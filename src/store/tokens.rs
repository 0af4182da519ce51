//! Bearer tokens. Only a SHA-256 of each token is stored; the token itself is shown once.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{parse_opt_ts, parse_ts, ts, Result, Store, StoreError};
use crate::domain::Role;

/// Every token starts with this, so a leaked one is easy to recognise in logs and scanners.
pub const TOKEN_PREFIX: &str = "hkr_";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Make a new token for `name` with `role`; returns the token text (shown once) and its record.
    pub fn add_token(
        &self,
        name: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(String, TokenInfo)> {
        if name.trim().is_empty() {
            return Err(StoreError::Conflict(
                "a token needs a name (the person or office it is for)".into(),
            ));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash(&token), ts(now)],
        )?;
        let id = conn.last_insert_rowid();
        Ok((
            token,
            TokenInfo {
                id,
                name: name.to_string(),
                role,
                created_at: now,
                revoked_at: None,
            },
        ))
    }

    /// The live (not revoked) token with this text, if any.
    pub fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, name, role, created_at, revoked_at FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                [hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get(4)?)),
            )
            .optional()?;
        row.map(to_info).transpose()
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.map(|r| to_info(r?)).collect()
    }

    /// Revoke a token by id; revoking twice is an error.
    pub fn revoke_token(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, ts(now)],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

fn to_info(
    (id, name, role, created, revoked): (i64, String, String, String, Option<String>),
) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id,
        name,
        role: role.parse().map_err(StoreError::Corrupt)?,
        created_at: parse_ts(&created)?,
        revoked_at: parse_opt_ts(revoked)?,
    })
}
