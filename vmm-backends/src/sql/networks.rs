//! [`NetworkStore`] on SQL. Pools reference their network, so a network with pools is not
//! deleted.

use async_trait::async_trait;
use vmm_core::{Error, Network, NetworkId, NetworkStore, Page, PageRequest, Result};

use super::{first, from_json, is_unique_violation, signed, to_json, Columns, SqlStore};

#[async_trait]
impl NetworkStore for SqlStore {
    async fn create_network(&self, network: &Network) -> Result<()> {
        sqlx::query("INSERT INTO networks (id, name, bridge, vlan, network) VALUES ($1, $2, $3, $4, $5)")
            .bind(network.id.to_string())
            .bind(&network.name)
            .bind(&network.bridge)
            .bind(network.vlan.map_or(-1, i64::from))
            .bind(to_json(network)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!(
                        "a network named {:?}, or on its bridge and VLAN, exists",
                        network.name
                    ))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_network(&self, id: NetworkId) -> Result<Network> {
        let query = sqlx::query("SELECT network FROM networks WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::NetworkNotFound { id }).await?;
        from_json(&row.text("network")?)
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        let limit = page.limit()?;
        let before: Option<NetworkId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                sqlx::query("SELECT network FROM networks WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(b.to_string())
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query("SELECT network FROM networks ORDER BY id DESC LIMIT $1")
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("network")?)).collect::<Result<Vec<Network>>>()?;
        Ok(Page::from_overfetch(items, limit, |n| n.id.to_string()))
    }

    async fn delete_network(&self, id: NetworkId) -> Result<()> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT id FROM networks WHERE id = $1{}", self.dialect.lock());
        self.row(sqlx::query(&sql).bind(id.to_string()), &mut *tx, Error::NetworkNotFound { id }).await?;
        let pool = sqlx::query("SELECT name FROM ip_pools WHERE network_id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        if let Some(pool) = pool {
            return Err(Error::conflict(format!("pool {} is on network {id}", pool.text("name")?)));
        }
        sqlx::query("DELETE FROM networks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }
}
