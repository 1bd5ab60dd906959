//! [`VmStore`] on SQL. Every create, resize and delete changes the VM's node's usage in the
//! same transaction; placement reads the locked node rows, never the VMs.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use vmm_core::placement::{self, Demand};
use vmm_core::{Error, Page, PageRequest, PlacementRequest, Result, Task, Vm, VmId, VmStore};

use super::{from_json, is_unique_violation, parse_ts, signed, to_json, ts, unsigned, Columns, SqlStore, Tx};

const COLUMNS: &str =
    "id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at";

fn vm(r: &AnyRow) -> Result<Vm> {
    Ok(Vm {
        id: r.parsed("id")?,
        name: r.text("name")?,
        vcpus: u32::try_from(r.int("vcpus")?).map_err(|e| Error::backend("sql", e))?,
        memory_mib: unsigned(r, "memory_mib")?,
        disk_gib: unsigned(r, "disk_gib")?,
        node_id: r.parsed("node_id")?,
        ip_pool_id: r.opt_text("ip_pool_id")?.map(|p| p.parse()).transpose()?,
        state: r.parsed("state")?,
        addresses: from_json(&r.text("addresses")?)?,
        created_at: parse_ts(&r.text("created_at")?)?,
    })
}

impl SqlStore {
    /// One VM, read in `tx`.
    async fn vm_in(&self, tx: &mut Tx, id: VmId) -> Result<Vm> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE id = $1");
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::VmNotFound { id }).await?;
        vm(&row)
    }
}

#[async_trait]
impl VmStore for SqlStore {
    async fn create_vm(&self, new: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let nodes = self.lock_nodes(&mut tx).await?;
        let demand = new.demand();
        let chosen = placement::place(&demand, &nodes, placement.strategy, placement.pinned)?;
        let mut vm = Vm { node_id: chosen.node_id, addresses: Vec::new(), ..new.clone() };
        if let Some(pool) = vm.ip_pool_id {
            vm.addresses.push(self.lease_in(&mut tx, pool, None, Some(vm.id), vm.created_at).await?.address);
        }
        sqlx::query(
            "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(vm.id.to_string())
        .bind(&vm.name)
        .bind(i64::from(vm.vcpus))
        .bind(signed(vm.memory_mib))
        .bind(signed(vm.disk_gib))
        .bind(vm.node_id.to_string())
        .bind(vm.ip_pool_id.map(|p| p.to_string()))
        .bind(vm.state.as_str())
        .bind(to_json(&vm.addresses)?)
        .bind(ts(vm.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::conflict(format!("VM {} exists", vm.id)) } else { self.err(e) })?;
        let node = nodes.iter().find(|n| n.id == vm.node_id).expect("placement chose a listed node");
        self.set_usage(&mut tx, node.id, node.allocated.with(&demand)).await?;
        self.insert_task(&mut tx, task).await?;
        self.commit(tx).await?;
        Ok(vm)
    }

    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE id = $1");
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &self.read, Error::VmNotFound { id }).await?;
        vm(&row)
    }

    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        let limit = page.limit()?;
        let before: Option<VmId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                let sql = format!("SELECT {COLUMNS} FROM vms WHERE id < $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(&sql).bind(b.to_string()).bind(over).fetch_all(&self.read).await
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM vms ORDER BY id DESC LIMIT $1");
                sqlx::query(&sql).bind(over).fetch_all(&self.read).await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(vm).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |v| v.id.to_string()))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        let done = sqlx::query("UPDATE vms SET name = $2, state = $3 WHERE id = $1")
            .bind(vm.id.to_string())
            .bind(&vm.name)
            .bind(vm.state.as_str())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::VmNotFound { id: vm.id });
        }
        Ok(())
    }

    async fn resize_vm(&self, id: VmId, target: Demand) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let mut current = self.vm_in(&mut tx, id).await?;
        let node = self.lock_node(&mut tx, current.node_id).await?;
        placement::check_resize(&node, &current.demand(), &target)?;
        sqlx::query("UPDATE vms SET vcpus = $2, memory_mib = $3, disk_gib = $4 WHERE id = $1")
            .bind(id.to_string())
            .bind(i64::from(target.vcpus))
            .bind(signed(target.memory_mib))
            .bind(signed(target.disk_gib))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.set_usage(&mut tx, node.id, node.allocated.without(&current.demand()).with(&target)).await?;
        self.commit(tx).await?;
        current.vcpus = target.vcpus;
        current.memory_mib = target.memory_mib;
        current.disk_gib = target.disk_gib;
        Ok(current)
    }

    async fn delete_vm(&self, id: VmId) -> Result<()> {
        let mut tx = self.begin().await?;
        let vm = self.vm_in(&mut tx, id).await?;
        let node = self.lock_node(&mut tx, vm.node_id).await?;
        self.release_vm_leases(&mut tx, id).await?;
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.set_usage(&mut tx, node.id, node.allocated.without(&vm.demand())).await?;
        self.commit(tx).await
    }
}
