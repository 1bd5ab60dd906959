//! [`VmStore`] on SQL. Every create, resize and delete changes the VM's node's usage in the
//! same transaction; placement reads the locked node rows, never the VMs. A VM's NICs are
//! JSON beside its flat `addresses`; a VM of the first release (no NICs stored) has one
//! user-mode NIC holding its addresses.

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use vmm_core::event::{vm_deleted_event, vm_drift_event, vm_lease_events, vm_owner_event};
use vmm_core::placement::{self, Demand};
use vmm_core::reconcile::{observes, ObservedState};
use vmm_core::{
    users::UserUsage, Error, EventType, GuestSettings, NodeId, Page, PageRequest, PlacementRequest, PoolId,
    Result, Task, TaskParams, UserId, Vm, VmAction, VmFilter, VmGuest, VmId, VmNic, VmStore,
};

use super::statement::Statement;
use super::{
    first, from_json, is_unique_violation, parse_ts, signed, to_json, ts, unsigned, Columns, SqlStore, Tx,
};

const COLUMNS: &str =
    "id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at, \
    image_id, hostname, nics, owner_id, observed_state, state_reason, placement_group_id, migrating_to, ha";

fn vm(r: &AnyRow) -> Result<Vm> {
    let mut vm = Vm {
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
        image_id: r.opt_text("image_id")?.map(|i| i.parse()).transpose()?,
        hostname: r.opt_text("hostname")?,
        nics: Vec::new(),
        owner_id: r.opt_text("owner_id")?.map(|o| o.parse()).transpose()?,
        observed_state: r
            .opt_text("observed_state")?
            .map(|o| o.parse())
            .transpose()
            .map_err(|_| Error::backend("sql", "bad observed_state"))?,
        state_reason: r.opt_text("state_reason")?,
        placement_group_id: r.opt_text("placement_group_id")?.map(|g| g.parse()).transpose()?,
        migrating_to: r.opt_text("migrating_to")?.map(|n| n.parse()).transpose()?,
        ha: r.int("ha")? != 0,
    };
    vm.nics = match r.opt_text("nics")? {
        Some(nics) => from_json(&nics)?,
        // A VM made before VMs had NICs of their own keeps the MAC it was defined with.
        None => {
            let mut nic = VmNic::new(vm.id, 0, vm.ip_pool_id);
            nic.mac = vm.id.mac_address();
            nic.addresses.clone_from(&vm.addresses);
            vec![nic]
        }
    };
    Ok(vm)
}

impl SqlStore {
    /// One VM, read and locked in `tx`.
    pub(super) async fn vm_in(&self, tx: &mut Tx, id: VmId) -> Result<Vm> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE id = $1{}", self.dialect.lock());
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::VmNotFound { id }).await?;
        vm(&row)
    }

    /// `ActiveTask` when the VM has a queued or running task, read in `tx`.
    async fn refuse_active(&self, tx: &mut Tx, vm: VmId) -> Result<()> {
        let active = sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
            .bind(vm.to_string())
            .fetch_all(&mut **tx)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        match active {
            Some(r) => Err(Error::ActiveTask { vm, task: r.parsed("id")? }),
            None => Ok(()),
        }
    }

    /// Saves a VM's NICs and the flat view of them.
    async fn write_nics(&self, tx: &mut Tx, vm: &Vm) -> Result<()> {
        sqlx::query("UPDATE vms SET nics = $2, addresses = $3, ip_pool_id = $4 WHERE id = $1")
            .bind(vm.id.to_string())
            .bind(to_json(&vm.nics)?)
            .bind(to_json(&vm.addresses)?)
            .bind(vm.ip_pool_id.map(|p| p.to_string()))
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Leases an address for each NIC of `vm` that has a pool, and puts each NIC on its
    /// pool's network.
    async fn lease_nics(&self, tx: &mut Tx, vm: &mut Vm) -> Result<()> {
        // Pools are locked in one order whatever the order of the NICs, so that two
        // transactions taking the same pools never wait for each other in a cycle.
        let pools: std::collections::BTreeSet<_> = vm.nics.iter().filter_map(|n| n.pool_id).collect();
        let mut networks = std::collections::HashMap::new();
        for pool in pools {
            networks.insert(pool, self.lock_pool(tx, pool).await?.network_id);
        }
        for nic in &mut vm.nics {
            let Some(pool) = nic.pool_id else { continue };
            nic.network_id = networks[&pool];
            nic.addresses = vec![self.lease_in(tx, pool, None, Some(vm.id), vm.created_at).await?.address];
        }
        vm.refresh_addresses();
        Ok(())
    }
}

#[async_trait]
impl VmStore for SqlStore {
    async fn create_vm(
        &self,
        new: &Vm,
        task: &Task,
        placement: &PlacementRequest,
        guest: Option<&GuestSettings>,
    ) -> Result<Vm> {
        let mut tx = self.begin().await?;
        if let Some(image) = task.image_id() {
            self.lock_image(&mut tx, image).await?;
        }
        let nodes = self.lock_nodes(&mut tx).await?;
        self.check_quota(&mut tx, new.owner_id, &UserUsage::of_new(new)).await?;
        let demand = new.demand();
        placement.check_group_of(new)?;
        let members = match &placement.group {
            // After the nodes are locked: no other create moves the group meanwhile.
            Some(group) => self.group_nodes(&mut tx, group.id).await?,
            None => Vec::new(),
        };
        let (chosen, task) = placement.place_task(&demand, &nodes, members, task)?;
        let mut vm = Vm { node_id: chosen.node_id, ..new.clone() };
        self.lease_nics(&mut tx, &mut vm).await?;
        let guest = VmGuest { current: guest.cloned(), next: None };
        sqlx::query(
            "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at, \
             image_id, hostname, nics, guest, owner_id, placement_group_id, ha) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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
        .bind(vm.image_id.map(|i| i.to_string()))
        .bind(vm.hostname.clone())
        .bind(to_json(&vm.nics)?)
        .bind(to_json(&guest)?)
        .bind(vm.owner_id.map(|o| o.to_string()))
        .bind(vm.placement_group_id.map(|g| g.to_string()))
        .bind(i64::from(vm.ha))
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::conflict(format!("VM {} exists", vm.id)) } else { self.err(e) })?;
        let node = nodes.iter().find(|n| n.id == vm.node_id).expect("placement chose a listed node");
        self.set_usage(&mut tx, node.id, node.allocated.with(&demand)).await?;
        self.emit(&mut tx, vm_lease_events(EventType::LeaseTaken, &vm, &vm.addresses, task.created_at))
            .await?;
        self.insert_task(&mut tx, &task).await?;
        self.commit(tx).await?;
        Ok(vm)
    }

    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE id = $1");
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &self.read, Error::VmNotFound { id }).await?;
        vm(&row)
    }

    async fn list_vms(&self, filter: &VmFilter, page: &PageRequest) -> Result<Page<Vm>> {
        let limit = page.limit()?;
        let before: Option<VmId> = page.cursor()?;
        // Fixed clauses only; every value is bound.
        let mut q = Statement::default();
        q.sql(&format!("SELECT {COLUMNS} FROM vms WHERE 1 = 1"));
        if let Some(owner) = filter.owner_id {
            q.sql(" AND owner_id = ").param(owner.to_string());
        }
        if let Some(node) = filter.node_id {
            q.sql(" AND node_id = ").param(node.to_string());
        }
        if let Some(state) = filter.state {
            q.sql(" AND state = ").param(state.as_str());
        }
        if let Some(name) = &filter.name {
            q.sql(" AND name = ").param(name.as_str());
        }
        if let Some(b) = before {
            q.sql(" AND id < ").param(b.to_string());
        }
        q.sql(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let rows = q.fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(vm).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |v| v.id.to_string()))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        let done =
            // A new state makes what was observed under the old one stale: unknown until the
            // reconciler looks again.
            sqlx::query(
                "UPDATE vms SET name = $2, image_id = $4, hostname = $5, \
                 observed_state = CASE WHEN state = $3 THEN observed_state ELSE NULL END, \
                 state_reason = CASE WHEN state = $3 THEN state_reason ELSE NULL END, state = $3 WHERE id = $1",
            )
                .bind(vm.id.to_string())
                .bind(&vm.name)
                .bind(vm.state.as_str())
                .bind(vm.image_id.map(|i| i.to_string()))
                .bind(vm.hostname.clone())
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
        self.check_quota(&mut tx, current.owner_id, &UserUsage::growth(&current.demand(), &target)).await?;
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

    async fn set_vm_owner(&self, id: VmId, owner: Option<UserId>) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let mut vm = self.vm_in(&mut tx, id).await?;
        if owner == vm.owner_id {
            return Ok(vm);
        }
        self.check_quota(&mut tx, owner, &UserUsage::of(&vm)).await?;
        let previous = vm.owner_id;
        vm.owner_id = owner;
        self.emit(&mut tx, vec![vm_owner_event(&vm, previous, Utc::now())]).await?;
        // The VM's tasks go with it.
        for sql in
            ["UPDATE vms SET owner_id = $2 WHERE id = $1", "UPDATE tasks SET owner_id = $2 WHERE vm_id = $1"]
        {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(owner.map(|o| o.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.commit(tx).await?;
        Ok(vm)
    }

    async fn delete_vm(&self, id: VmId) -> Result<()> {
        let mut tx = self.begin().await?;
        let vm = self.vm_in(&mut tx, id).await?;
        // With capacity a migration that did not end cleanly still holds: both nodes, locked
        // in id order as every multi-node transaction takes them.
        let held = vm.migrating_to.filter(|h| *h != vm.node_id);
        let mut ids = vec![vm.node_id];
        ids.extend(held);
        ids.sort();
        let mut locked = Vec::new();
        for node in ids {
            locked.push(self.lock_node(&mut tx, node).await?);
        }
        if let Some(target) = locked.iter().find(|n| Some(n.id) == held) {
            self.set_usage(&mut tx, target.id, target.allocated.without(&vm.demand())).await?;
        }
        let node = locked.into_iter().find(|n| n.id == vm.node_id).expect("locked above");
        self.release_vm_leases(&mut tx, id).await?;
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.set_usage(&mut tx, node.id, node.allocated.without(&vm.demand())).await?;
        let now = Utc::now();
        let mut events = vm_lease_events(EventType::LeaseReleased, &vm, &vm.addresses, now);
        events.push(vm_deleted_event(&vm, now));
        self.emit(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn vm_guest(&self, id: VmId) -> Result<VmGuest> {
        let query = sqlx::query("SELECT guest FROM vms WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::VmNotFound { id }).await?;
        row.opt_text("guest")?.map(|g| from_json(&g)).transpose().map(Option::unwrap_or_default)
    }

    async fn set_vm_guest(&self, id: VmId, guest: &VmGuest) -> Result<()> {
        let done = sqlx::query("UPDATE vms SET guest = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to_json(guest)?)
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::VmNotFound { id });
        }
        Ok(())
    }

    async fn queue_reinstall(&self, task: &Task, next: &GuestSettings) -> Result<()> {
        let id = task.vm_id.ok_or_else(|| Error::invalid("task", "a reinstall names its VM"))?;
        let mut tx = self.begin().await?;
        if let Some(image) = task.image_id() {
            self.lock_image(&mut tx, image).await?;
        }
        let vm = self.vm_in(&mut tx, id).await?;
        self.refuse_active(&mut tx, id).await?;
        vm.state.apply(id, VmAction::Reinstall)?;
        let row = self
            .row(
                sqlx::query("SELECT guest FROM vms WHERE id = $1").bind(id.to_string()),
                &mut *tx,
                Error::VmNotFound { id },
            )
            .await?;
        let mut guest: VmGuest =
            row.opt_text("guest")?.map(|g| from_json(&g)).transpose()?.unwrap_or_default();
        guest.next = Some(next.clone());
        sqlx::query("UPDATE vms SET guest = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to_json(&guest)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.insert_task(&mut tx, task).await?;
        self.commit(tx).await
    }

    async fn add_vm_address(
        &self,
        id: VmId,
        pool: PoolId,
        address: Option<IpAddr>,
        task: &Task,
    ) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let mut vm = self.vm_in(&mut tx, id).await?;
        self.refuse_active(&mut tx, id).await?;
        vm.state.apply(id, VmAction::ChangeAddresses)?;
        let index = vmm_core::vm::free_nic_index(&vm)?;
        // The owner's row before the pool's: rows are locked in one order everywhere (VM or
        // nodes, then the user, then pools), so that no two transactions wait on each other.
        self.check_quota(&mut tx, vm.owner_id, &UserUsage::address()).await?;
        let network = self.lock_pool(&mut tx, pool).await?.network_id;
        let lease = self.lease_in(&mut tx, pool, address, Some(id), task.created_at).await?;
        let mut nic = VmNic::new(id, index, Some(pool));
        nic.network_id = network;
        nic.addresses.push(lease.address);
        vm.nics.push(nic);
        vm.refresh_addresses();
        self.write_nics(&mut tx, &vm).await?;
        self.emit(&mut tx, vm_lease_events(EventType::LeaseTaken, &vm, &[lease.address], task.created_at))
            .await?;
        let task = Task { params: TaskParams::AddAddress { address: lease.address }, ..task.clone() };
        self.insert_task(&mut tx, &task).await?;
        self.commit(tx).await?;
        Ok(vm)
    }

    async fn vms_on_node(&self, node: NodeId) -> Result<Vec<Vm>> {
        let sql = format!("SELECT {COLUMNS} FROM vms WHERE node_id = $1");
        let rows =
            sqlx::query(&sql).bind(node.to_string()).fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        rows.iter().map(vm).collect()
    }

    async fn observe_vm(&self, id: VmId, observed: ObservedState, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let vm = match self.vm_in(&mut tx, id).await {
            Ok(vm) => vm,
            Err(Error::VmNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let busy = sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if !busy.is_empty() || !observes(vm.state) || vm.observed_state == Some(observed) {
            return Ok(false);
        }
        sqlx::query("UPDATE vms SET observed_state = $2, state_reason = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(observed.to_string())
            .bind(observed.reason(vm.state))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.emit(&mut tx, vm_drift_event(&vm, observed, at).into_iter().collect()).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn remove_vm_address(&self, id: VmId, address: IpAddr) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let mut vm = self.vm_in(&mut tx, id).await?;
        let nic = vm
            .nics
            .iter()
            .find(|n| n.addresses.contains(&address))
            .ok_or_else(|| Error::invalid("address", format!("VM {id} does not hold {address}")))?;
        if let Some(pool) = nic.pool_id {
            self.end_lease(&mut tx, pool, address).await?;
        }
        self.emit(&mut tx, vm_lease_events(EventType::LeaseReleased, &vm, &[address], Utc::now())).await?;
        for n in &mut vm.nics {
            n.addresses.retain(|a| *a != address);
        }
        vm.nics.retain(|n| !n.addresses.is_empty() || n.pool_id.is_none());
        vm.refresh_addresses();
        self.write_nics(&mut tx, &vm).await?;
        self.commit(tx).await?;
        Ok(vm)
    }
}
