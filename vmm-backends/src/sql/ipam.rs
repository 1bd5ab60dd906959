//! [`IpamStore`] on SQL. The free addresses of a pool are kept as disjoint intervals
//! (`ip_free`), so the next free one is the first row of an index scan: O(log n) in the
//! leases, whatever the pool's size. Splitting and merging intervals follows the same rules
//! as the in-memory allocator ([`split_free`], [`merge_free`]).

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::event::lease_event;
use vmm_core::ipam::{from_u128, merge_free, split_free, to_u128};
use vmm_core::{Error, EventType, IpLease, IpPool, IpamStore, Page, PageRequest, PoolId, Result, VmId};

use super::{
    first, from_json, is_unique_violation, key, parse_ts, signed, to_json, ts, unkey, Columns, SqlStore, Tx,
};

impl SqlStore {
    /// The pool, locked for the transaction.
    pub(super) async fn lock_pool(&self, tx: &mut Tx, pool: PoolId) -> Result<IpPool> {
        let sql = format!("SELECT pool FROM ip_pools WHERE id = $1{}", self.dialect.lock());
        let row = self
            .row(sqlx::query(&sql).bind(pool.to_string()), &mut **tx, Error::PoolNotFound { id: pool })
            .await?;
        from_json(&row.text("pool")?)
    }

    async fn add_interval(&self, tx: &mut Tx, pool: &str, (start, end): (u128, u128)) -> Result<()> {
        sqlx::query("INSERT INTO ip_free (pool_id, start_key, end_key) VALUES ($1, $2, $3)")
            .bind(pool)
            .bind(key(start))
            .bind(key(end))
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn remove_interval(&self, tx: &mut Tx, pool: &str, start: u128) -> Result<()> {
        sqlx::query("DELETE FROM ip_free WHERE pool_id = $1 AND start_key = $2")
            .bind(pool)
            .bind(key(start))
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The free interval that starts at or before `at` (or the first one), if any.
    async fn interval(&self, tx: &mut Tx, pool: &str, at: Option<u128>) -> Result<Option<(u128, u128)>> {
        let rows =
            match at {
                Some(n) => {
                    sqlx::query(
                        "SELECT start_key, end_key FROM ip_free WHERE pool_id = $1 AND start_key <= $2 \
                 ORDER BY start_key DESC LIMIT 1",
                    )
                    .bind(pool)
                    .bind(key(n))
                    .fetch_all(&mut **tx)
                    .await
                }
                None => sqlx::query(
                    "SELECT start_key, end_key FROM ip_free WHERE pool_id = $1 ORDER BY start_key LIMIT 1",
                )
                .bind(pool)
                .fetch_all(&mut **tx)
                .await,
            }
            .map_err(|e| self.err(e))?;
        first(rows).map(|r| Ok((unkey(&r.text("start_key")?)?, unkey(&r.text("end_key")?)?))).transpose()
    }

    /// Takes `address` (or the lowest free one) out of the pool's free intervals.
    async fn take(&self, tx: &mut Tx, p: &IpPool, address: Option<IpAddr>) -> Result<IpAddr> {
        let pool = p.id.to_string();
        if let Some(a) = address {
            p.check_usable(a)?;
        }
        let wanted = address.map(to_u128);
        let (start, end, n) = match (self.interval(tx, &pool, wanted).await?, wanted, address) {
            (Some((s, e)), Some(n), _) if n <= e => (s, e, n),
            (_, Some(_), Some(a)) => return Err(Error::AddressInUse { pool: p.id, address: a }),
            (Some((s, e)), None, _) => (s, e, s),
            _ => return Err(Error::PoolExhausted { pool: p.id }),
        };
        self.remove_interval(tx, &pool, start).await?;
        for piece in split_free(start, end, n).into_iter().flatten() {
            self.add_interval(tx, &pool, piece).await?;
        }
        Ok(from_u128(n, p.is_v6()))
    }

    /// Gives `a` back to the pool's free intervals, merged with its free neighbours.
    pub(super) async fn give_back(&self, tx: &mut Tx, pool: PoolId, a: IpAddr) -> Result<()> {
        let pool = pool.to_string();
        let n = to_u128(a);
        let below = match n.checked_sub(1) {
            Some(prev) => first(
                sqlx::query("SELECT start_key FROM ip_free WHERE pool_id = $1 AND end_key = $2")
                    .bind(&pool)
                    .bind(key(prev))
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(|e| self.err(e))?,
            )
            .map(|r| unkey(&r.text("start_key")?))
            .transpose()?,
            None => None,
        };
        let above = match n.checked_add(1) {
            Some(next) => first(
                sqlx::query("SELECT end_key FROM ip_free WHERE pool_id = $1 AND start_key = $2")
                    .bind(&pool)
                    .bind(key(next))
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(|e| self.err(e))?,
            )
            .map(|r| unkey(&r.text("end_key")?))
            .transpose()?,
            None => None,
        };
        if let Some(start) = below {
            self.remove_interval(tx, &pool, start).await?;
        }
        if above.is_some() {
            self.remove_interval(tx, &pool, n + 1).await?;
        }
        self.add_interval(tx, &pool, merge_free(n, below, above)).await
    }

    /// Leases `address` (or the lowest free one) from `pool` to `vm`, in `tx`.
    pub(super) async fn lease_in(
        &self,
        tx: &mut Tx,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        let p = self.lock_pool(tx, pool).await?;
        let a = self.take(tx, &p, address).await?;
        sqlx::query(
            "INSERT INTO ip_leases (pool_id, address_key, address, vm_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(pool.to_string())
        .bind(key(to_u128(a)))
        .bind(a.to_string())
        .bind(vm.map(|v| v.to_string()))
        .bind(ts(now))
        .execute(&mut **tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::AddressInUse { pool, address: a } } else { self.err(e) })?;
        Ok(IpLease { pool_id: pool, address: a, vm_id: vm, created_at: now })
    }

    /// Ends every lease `vm` holds, in `tx`.
    pub(super) async fn release_vm_leases(&self, tx: &mut Tx, vm: VmId) -> Result<()> {
        let sql = format!("SELECT pool_id, address FROM ip_leases WHERE vm_id = $1{}", self.dialect.lock());
        let leases =
            sqlx::query(&sql).bind(vm.to_string()).fetch_all(&mut **tx).await.map_err(|e| self.err(e))?;
        for r in &leases {
            let pool: PoolId = r.parsed("pool_id")?;
            let a: IpAddr = r.parsed("address")?;
            self.end_lease(tx, pool, a).await?;
        }
        Ok(())
    }

    /// Ends the lease of `address` in `pool`, whoever holds it, and frees the address, in
    /// `tx`.
    pub(super) async fn end_lease(&self, tx: &mut Tx, pool: PoolId, address: IpAddr) -> Result<()> {
        self.lock_pool(tx, pool).await?;
        sqlx::query("DELETE FROM ip_leases WHERE pool_id = $1 AND address_key = $2")
            .bind(pool.to_string())
            .bind(key(to_u128(address)))
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        self.give_back(tx, pool, address).await
    }
}

#[async_trait]
impl IpamStore for SqlStore {
    async fn create_pool(&self, pool: &IpPool) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(id) = pool.network_id {
            let sql = format!("SELECT id FROM networks WHERE id = $1{}", self.dialect.lock());
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut *tx, Error::NetworkNotFound { id }).await?;
        }
        sqlx::query("INSERT INTO ip_pools (id, name, pool, network_id) VALUES ($1, $2, $3, $4)")
            .bind(pool.id.to_string())
            .bind(&pool.name)
            .bind(to_json(pool)?)
            .bind(pool.network_id.map(|n| n.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a pool named {:?} exists", pool.name))
                } else {
                    self.err(e)
                }
            })?;
        let id = pool.id.to_string();
        for interval in pool.usable_intervals() {
            self.add_interval(&mut tx, &id, interval).await?;
        }
        self.commit(tx).await
    }

    async fn get_pool(&self, pool: PoolId) -> Result<IpPool> {
        let row = self
            .row(
                sqlx::query("SELECT pool FROM ip_pools WHERE id = $1").bind(pool.to_string()),
                &self.read,
                Error::PoolNotFound { id: pool },
            )
            .await?;
        from_json(&row.text("pool")?)
    }

    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        let limit = page.limit()?;
        let before: Option<PoolId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                sqlx::query("SELECT pool FROM ip_pools WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(b.to_string())
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query("SELECT pool FROM ip_pools ORDER BY id DESC LIMIT $1")
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("pool")?)).collect::<Result<Vec<IpPool>>>()?;
        Ok(Page::from_overfetch(items, limit, |p| p.id.to_string()))
    }

    async fn delete_pool(&self, pool: PoolId) -> Result<()> {
        let mut tx = self.begin().await?;
        self.lock_pool(&mut tx, pool).await?;
        let leases = first(
            sqlx::query("SELECT COUNT(*) AS n FROM ip_leases WHERE pool_id = $1")
                .bind(pool.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e))?,
        )
        .map(|r| r.int("n"))
        .transpose()?
        .unwrap_or(0);
        if leases > 0 {
            return Err(Error::conflict(format!("pool {pool} still has {leases} leases")));
        }
        for q in ["DELETE FROM ip_free WHERE pool_id = $1", "DELETE FROM ip_pools WHERE id = $1"] {
            sqlx::query(q).bind(pool.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        self.commit(tx).await
    }

    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        let mut tx = self.begin().await?;
        let lease = self.lease_in(&mut tx, pool, address, vm, now).await?;
        self.emit(&mut tx, vec![lease_event(EventType::LeaseTaken, pool, lease.address, vm, None, now)])
            .await?;
        self.commit(tx).await?;
        Ok(lease)
    }

    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        let mut tx = self.begin().await?;
        self.lock_pool(&mut tx, pool).await?;
        let row = self
            .row(
                sqlx::query("SELECT vm_id FROM ip_leases WHERE pool_id = $1 AND address_key = $2")
                    .bind(pool.to_string())
                    .bind(key(to_u128(address))),
                &mut *tx,
                Error::LeaseNotFound { pool, address },
            )
            .await?;
        if let Some(vm) = row.opt_text("vm_id")? {
            return Err(Error::conflict(format!("{address} is held by VM {vm}")));
        }
        self.end_lease(&mut tx, pool, address).await?;
        let event = lease_event(EventType::LeaseReleased, pool, address, None, None, Utc::now());
        self.emit(&mut tx, vec![event]).await?;
        self.commit(tx).await
    }

    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        let limit = page.limit()?;
        let after: Option<IpAddr> = page.cursor()?;
        self.get_pool(pool).await?;
        let rows = sqlx::query(
            "SELECT address, vm_id, created_at FROM ip_leases WHERE pool_id = $1 AND address_key > $2 \
             ORDER BY address_key LIMIT $3",
        )
        .bind(pool.to_string())
        .bind(after.map(|a| key(to_u128(a))).unwrap_or_default())
        .bind(signed(limit as u64 + 1))
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.err(e))?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(IpLease {
                    pool_id: pool,
                    address: r.parsed("address")?,
                    vm_id: r.opt_text("vm_id")?.map(|v| v.parse()).transpose()?,
                    created_at: parse_ts(&r.text("created_at")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |l| l.address.to_string()))
    }
}
