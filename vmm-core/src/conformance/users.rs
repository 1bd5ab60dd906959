//! The users area of the [`Store`](crate::Store) suite.

use chrono::{Duration, Utc};

use crate::{
    ApiToken, AuthSource, Error, PageRequest, PlacementRequest, Quota, Role, SshKey, Store, Strategy,
    TaskFilter, TokenId, TokenKind, User, UserId, UserPatch, UserState, Vm, VmFilter,
};

fn user(email: &str, role: Role) -> User {
    User {
        id: UserId::new(),
        email: email.into(),
        role,
        state: UserState::Active,
        auth: AuthSource::Local,
        quota: Quota { max_vms: Some(3), ..Quota::default() },
        created_at: Utc::now(),
    }
}

fn token(user: &User, name: &str) -> ApiToken {
    ApiToken {
        id: TokenId::new(),
        user_id: user.id,
        name: name.into(),
        kind: TokenKind::Api,
        role: Some(Role::User),
        expires_at: Some(Utc::now() + Duration::hours(1)),
        created_at: Utc::now(),
    }
}

/// Users: unique emails, password hashes kept beside them, updates, paging, and deleting a
/// user takes their tokens with them.
pub async fn users_and_tokens(s: &dyn Store) {
    let ann = user("ann@example.com", Role::User);
    s.create_user(&ann, Some("hash-a")).await.expect("create_user");
    let dup = user("ann@example.com", Role::Admin);
    assert!(matches!(s.create_user(&dup, None).await, Err(Error::Conflict { .. })), "duplicate email");
    assert_eq!(s.get_user(ann.id).await.unwrap(), ann);
    let (found, hash) = s.user_by_email("ann@example.com").await.unwrap().expect("by email");
    assert_eq!((found, hash.as_deref()), (ann.clone(), Some("hash-a")));
    assert!(s.user_by_email("nobody@example.com").await.unwrap().is_none());

    let mut changed = ann.clone();
    changed.state = UserState::Disabled;
    changed.quota.max_vcpus = Some(8);
    let quota = Quota { max_vcpus: Some(8), ..ann.quota };
    let patch = UserPatch { state: Some(UserState::Disabled), quota: Some(quota), ..UserPatch::default() };
    assert_eq!(s.update_user(ann.id, &patch, None).await.unwrap(), changed);
    let (after, hash) = s.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!((after, hash.as_deref()), (changed.clone(), Some("hash-a")), "no hash given: kept");
    // A patch of one field leaves the others as they are now.
    let role = UserPatch { role: Some(Role::Readonly), ..UserPatch::default() };
    let after = s.update_user(ann.id, &role, Some("hash-b")).await.unwrap();
    assert_eq!((after.role, after.state), (Role::Readonly, UserState::Disabled));
    assert_eq!(s.user_by_email("ann@example.com").await.unwrap().unwrap().1.as_deref(), Some("hash-b"));
    let back = UserPatch { role: Some(Role::User), ..UserPatch::default() };
    changed = s.update_user(ann.id, &back, None).await.unwrap();
    let ghost = user("ghost@example.com", Role::User);
    assert!(matches!(s.update_user(ghost.id, &back, None).await, Err(Error::UserNotFound { .. })));

    let bob = user("bob@example.com", Role::Operator);
    s.create_user(&bob, None).await.unwrap();
    let first = s.list_users(&PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items, vec![bob.clone()], "newest first");
    let rest =
        s.list_users(&PageRequest { limit: Some(1), cursor: first.next_cursor.clone() }).await.unwrap();
    assert_eq!(rest.items, vec![changed.clone()]);

    // Tokens: found by prefix with their user as they are now; prefixes are unique.
    let t1 = token(&ann, "ci");
    s.create_token(&t1, "prefix-1", "h1").await.unwrap();
    assert!(
        matches!(s.create_token(&token(&bob, "x"), "prefix-1", "h2").await, Err(Error::Conflict { .. })),
        "a prefix in use"
    );
    assert!(
        matches!(
            s.create_token(&token(&ghost, "x"), "prefix-9", "h9").await,
            Err(Error::UserNotFound { .. })
        ),
        "a token of no user"
    );
    let stored = s.token_by_prefix("prefix-1").await.unwrap().expect("by prefix");
    assert_eq!((stored.token, stored.hash.as_str(), stored.user), (t1.clone(), "h1", changed.clone()));
    assert!(s.token_by_prefix("prefix-2").await.unwrap().is_none());
    let t2 = token(&bob, "deploy");
    s.create_token(&t2, "prefix-2", "h2").await.unwrap();
    assert_eq!(s.list_tokens(Some(ann.id), &PageRequest::default()).await.unwrap().items, vec![t1.clone()]);
    assert_eq!(
        s.list_tokens(None, &PageRequest::default()).await.unwrap().items,
        vec![t2.clone(), t1.clone()]
    );
    assert_eq!(s.get_token(t2.id).await.unwrap(), t2);
    s.delete_token(t2.id).await.unwrap();
    assert!(matches!(s.delete_token(t2.id).await, Err(Error::TokenNotFound { .. })));
    assert!(s.token_by_prefix("prefix-2").await.unwrap().is_none(), "revoked at once");

    s.delete_user(ann.id).await.unwrap();
    assert!(matches!(s.get_user(ann.id).await, Err(Error::UserNotFound { .. })));
    assert!(s.token_by_prefix("prefix-1").await.unwrap().is_none(), "a deleted user's tokens go with them");
    assert!(matches!(s.get_token(t1.id).await, Err(Error::TokenNotFound { .. })));
    assert!(matches!(s.delete_user(ann.id).await, Err(Error::UserNotFound { .. })));
}

/// VMs have owners: a user's VMs and their tasks list a page at a time without anyone
/// else's, and a user who owns a VM cannot be deleted.
pub async fn owners(s: &dyn Store) {
    s.create_node(&super::store::node("n1", 64)).await.expect("create_node");
    let (ann, bob) = (user("ann@example.com", Role::User), user("bob@example.com", Role::User));
    s.create_user(&ann, None).await.unwrap();
    s.create_user(&bob, None).await.unwrap();
    let placement = PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None };
    let mut mine = Vec::new();
    for owner in [Some(ann.id), Some(bob.id), Some(ann.id), None, Some(ann.id)] {
        let (vm, task) = super::store::new_vm(None);
        let vm = Vm { owner_id: owner, ..vm };
        let made = s.create_vm(&vm, &task, &placement, None).await.expect("create_vm");
        assert_eq!(made.owner_id, owner, "the owner is kept");
        if owner == Some(ann.id) {
            mine.push((vm.id, task.id));
        }
    }
    mine.reverse();
    let first = s
        .list_vms(&VmFilter { owner_id: Some(ann.id), ..VmFilter::default() }, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.iter().map(|v| v.id).collect::<Vec<_>>(), [mine[0].0, mine[1].0], "newest first");
    let rest = s
        .list_vms(
            &VmFilter { owner_id: Some(ann.id), ..VmFilter::default() },
            &PageRequest { limit: Some(2), cursor: first.next_cursor },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|v| v.id).collect::<Vec<_>>(), [mine[2].0]);
    assert!(rest.next_cursor.is_none());
    assert_eq!(s.get_vm(mine[0].0).await.unwrap().owner_id, Some(ann.id));
    let tasks = s
        .list_tasks(&TaskFilter { owner_id: Some(ann.id), ..TaskFilter::default() }, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        tasks.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        mine.iter().map(|m| m.1).collect::<Vec<_>>()
    );
    assert_eq!(s.get_task(mine[0].1).await.unwrap().owner_id, Some(ann.id), "a task is its VM's owner's");
    // ...and stays theirs once the VM is gone.
    s.delete_vm(mine[0].0).await.unwrap();
    let after = s
        .list_tasks(&TaskFilter { owner_id: Some(ann.id), ..TaskFilter::default() }, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(after.items.len(), 3);
    assert!(matches!(s.delete_user(ann.id).await, Err(Error::Conflict { .. })), "ann owns VMs");
    assert_eq!(s.get_user(ann.id).await.unwrap(), ann, "nothing changed");
}

/// A new VM of `owner` with `vcpus`, 1 GiB and 10 GiB, and its create task.
fn vm_of(owner: UserId, vcpus: u32) -> (Vm, crate::Task) {
    let (vm, task) = super::store::new_vm(None);
    (Vm { owner_id: Some(owner), vcpus, ..vm }, task)
}

/// Quotas hold in the transaction that takes the resource: a create, a resize that grows,
/// an address; what shrinks is never refused; a VM of no one is not counted.
pub async fn quotas(s: &dyn Store) {
    s.create_node(&super::store::node("n1", 64)).await.unwrap();
    let mut ann = user("ann@example.com", Role::User);
    ann.quota = Quota { max_vms: Some(2), max_vcpus: Some(3), ..Quota::default() };
    s.create_user(&ann, None).await.unwrap();
    let placement = PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None };
    let (first, task) = vm_of(ann.id, 2);
    s.create_vm(&first, &task, &placement, None).await.expect("within the quota");
    let (big, task) = vm_of(ann.id, 2);
    match s.create_vm(&big, &task, &placement, None).await {
        Err(Error::QuotaExceeded { limit: "max_vcpus", max: 3, wanted: 4 }) => {}
        other => panic!("over max_vcpus: {other:?}"),
    }
    assert!(matches!(s.get_vm(big.id).await, Err(Error::VmNotFound { .. })), "nothing was made");
    let (second, task) = vm_of(ann.id, 1);
    s.create_vm(&second, &task, &placement, None).await.expect("exactly at the quota");
    let (third, task) = vm_of(ann.id, 0);
    assert!(matches!(
        s.create_vm(&third, &task, &placement, None).await,
        Err(Error::QuotaExceeded { limit: "max_vms", .. })
    ));
    let (unowned, task) = super::store::new_vm(None);
    s.create_vm(&unowned, &task, &placement, None).await.expect("a VM of no one counts for no one");
    let usage = s.user_usage(ann.id).await.unwrap();
    assert_eq!((usage.vms, usage.vcpus, usage.memory_mib, usage.disk_gib), (2, 3, 2048, 20));

    let grow = crate::Demand { vcpus: 2, memory_mib: 1024, disk_gib: 10 };
    assert!(matches!(
        s.resize_vm(second.id, grow).await,
        Err(Error::QuotaExceeded { limit: "max_vcpus", .. })
    ));
    let shrink = crate::Demand { vcpus: 1, memory_mib: 512, disk_gib: 10 };
    s.resize_vm(first.id, shrink).await.expect("shrinking is never refused");
    s.resize_vm(second.id, grow).await.expect("room again after the other shrank");
    let below =
        UserPatch { quota: Some(Quota { max_vcpus: Some(1), ..Quota::default() }), ..UserPatch::default() };
    assert!(
        matches!(s.update_user(ann.id, &below, None).await, Err(Error::Invalid { .. })),
        "a quota below usage"
    );
    assert_eq!(s.get_user(ann.id).await.unwrap().quota, ann.quota, "nothing changed");

    // A VM given to another user moves its usage to their quota, or is refused whole.
    let mut bob = user("bob@example.com", Role::User);
    bob.quota = Quota { max_vcpus: Some(1), ..Quota::default() };
    s.create_user(&bob, None).await.unwrap();
    assert!(matches!(
        s.set_vm_owner(second.id, Some(bob.id)).await,
        Err(Error::QuotaExceeded { limit: "max_vcpus", .. })
    ));
    assert_eq!(s.get_vm(second.id).await.unwrap().owner_id, Some(ann.id), "nothing changed");
    let given = s.set_vm_owner(first.id, Some(bob.id)).await.expect("within bob's quota");
    assert_eq!(given.owner_id, Some(bob.id));
    assert_eq!((s.user_usage(ann.id).await.unwrap().vms, s.user_usage(bob.id).await.unwrap().vms), (1, 1));
    assert!(matches!(s.set_vm_owner(crate::VmId::new(), None).await, Err(Error::VmNotFound { .. })));
}

/// `n` creates at once for a user with room for one: exactly one gets through.
pub async fn quota_race(s: &dyn Store, n: usize) {
    s.create_node(&super::store::node("n1", 4096)).await.unwrap();
    let mut ann = user("ann@example.com", Role::User);
    ann.quota = Quota { max_vms: Some(1), ..Quota::default() };
    s.create_user(&ann, None).await.unwrap();
    let placement = PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None };
    let attempts = (0..n).map(|_| {
        let (vm, task) = vm_of(ann.id, 1);
        let placement = &placement;
        async move { s.create_vm(&vm, &task, placement, None).await }
    });
    let results = futures::future::join_all(attempts).await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    let refused =
        results.iter().filter(|r| matches!(r, Err(Error::QuotaExceeded { limit: "max_vms", .. }))).count();
    assert_eq!((made, refused), (1, n - 1), "{results:?}");
    assert_eq!(s.user_usage(ann.id).await.unwrap().vms, 1);
}

/// SSH key libraries: a fingerprint once per owner, lists per owner, keys go with their user.
pub async fn ssh_keys(s: &dyn Store) {
    let (ann, bob) = (user("ann@example.com", Role::User), user("bob@example.com", Role::User));
    s.create_user(&ann, None).await.unwrap();
    s.create_user(&bob, None).await.unwrap();
    let key = |owner: &User, name: &str, fingerprint: &str| SshKey {
        id: crate::SshKeyId::new(),
        owner_id: owner.id,
        name: name.into(),
        public_key: format!("ssh-ed25519 AAAA {name}"),
        fingerprint: fingerprint.into(),
        created_at: Utc::now(),
    };
    let a1 = key(&ann, "a1", "SHA256:one");
    s.create_ssh_key(&a1).await.expect("create_ssh_key");
    assert!(
        matches!(s.create_ssh_key(&key(&ann, "again", "SHA256:one")).await, Err(Error::Conflict { .. })),
        "a fingerprint once per library"
    );
    let b1 = key(&bob, "b1", "SHA256:one");
    s.create_ssh_key(&b1).await.expect("the same key in another library");
    let a2 = key(&ann, "a2", "SHA256:two");
    s.create_ssh_key(&a2).await.unwrap();
    let ghost = user("ghost@example.com", Role::User);
    assert!(matches!(s.create_ssh_key(&key(&ghost, "g", "SHA256:g")).await, Err(Error::UserNotFound { .. })));
    assert_eq!(s.get_ssh_key(a1.id).await.unwrap(), a1);
    let anns = s.list_ssh_keys(Some(ann.id), &PageRequest::first(1)).await.unwrap();
    assert_eq!(anns.items, vec![a2.clone()]);
    let rest = s
        .list_ssh_keys(Some(ann.id), &PageRequest { limit: Some(1), cursor: anns.next_cursor })
        .await
        .unwrap();
    assert_eq!((rest.items, rest.next_cursor), (vec![a1.clone()], None));
    assert_eq!(
        s.list_ssh_keys(None, &PageRequest::default()).await.unwrap().items,
        vec![a2.clone(), b1.clone(), a1.clone()]
    );
    s.delete_ssh_key(a2.id).await.unwrap();
    assert!(matches!(s.delete_ssh_key(a2.id).await, Err(Error::SshKeyNotFound { .. })));
    s.delete_user(bob.id).await.unwrap();
    assert!(
        matches!(s.get_ssh_key(b1.id).await, Err(Error::SshKeyNotFound { .. })),
        "keys go with their user"
    );
}

/// The audit log: appended, listed newest first by actor or by target, a page at a time.
pub async fn audit(s: &dyn Store) {
    let (ann, bob) = (UserId::new(), UserId::new());
    let entry = |actor: Option<UserId>, target: Option<&str>, outcome: u16| crate::AuditEntry {
        id: crate::AuditId::new(),
        at: Utc::now(),
        actor_id: actor,
        token_id: None,
        action: "POST /api/v1/vms".into(),
        target_id: target.map(str::to_owned),
        request_id: Some("r-1".into()),
        client: Some("192.0.2.7".into()),
        outcome,
    };
    let entries = [
        entry(Some(ann), Some("vm-1"), 202),
        entry(Some(bob), Some("vm-1"), 404),
        entry(None, Some("ann@example.com"), 401),
        entry(Some(ann), Some("vm-2"), 202),
    ];
    for e in &entries {
        s.append_audit(e).await.expect("append_audit");
    }
    let by_ann = crate::AuditFilter { actor_id: Some(ann), target_id: None };
    let first = s.list_audit(&by_ann, &PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items, vec![entries[3].clone()], "newest first");
    let rest =
        s.list_audit(&by_ann, &PageRequest { limit: Some(1), cursor: first.next_cursor }).await.unwrap();
    assert_eq!((rest.items, rest.next_cursor), (vec![entries[0].clone()], None));
    let on_vm = crate::AuditFilter { actor_id: None, target_id: Some("vm-1".into()) };
    assert_eq!(
        s.list_audit(&on_vm, &PageRequest::default()).await.unwrap().items,
        vec![entries[1].clone(), entries[0].clone()]
    );
    assert_eq!(
        s.list_audit(&crate::AuditFilter::default(), &PageRequest::default()).await.unwrap().items.len(),
        4
    );

    // Written before the change, completed after with the outcome and the object made.
    let pending = entry(None, None, 0);
    s.append_audit(&pending).await.unwrap();
    let done = crate::AuditOutcome { status: 201, target_id: Some("vm-3".into()), actor_id: Some(ann) };
    s.complete_audit(pending.id, &done).await.expect("complete_audit");
    let on_new = crate::AuditFilter { actor_id: None, target_id: Some("vm-3".into()) };
    let found = s.list_audit(&on_new, &PageRequest::default()).await.unwrap().items;
    assert_eq!(
        found,
        vec![crate::AuditEntry {
            outcome: 201,
            target_id: Some("vm-3".into()),
            actor_id: Some(ann),
            ..pending
        }]
    );
    s.complete_audit(crate::AuditId::new(), &crate::AuditOutcome { status: 200, ..Default::default() })
        .await
        .expect("an unknown entry is no error");
}
