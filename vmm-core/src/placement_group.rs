//! Placement groups: VMs that placement keeps apart (anti-affinity: each on its own node,
//! as the members of a replicated service should be) or together (affinity: on one node,
//! as chatty peers may want). A VM joins a group when it is created; create, and the
//! what-if question, honour the group's policy, and name it when a node is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{NodeId, PlacementGroupId};

/// How a group's VMs are placed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum GroupPolicy {
    /// All on one node: the first VM's node takes the rest.
    Affinity,
    /// Each on a node of its own: a node that holds one refuses the next.
    AntiAffinity,
}

/// What an operator gives to make a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupSpec {
    /// Unique display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// Apart or together.
    pub policy: GroupPolicy,
}

/// A placement group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementGroup {
    /// The id.
    pub id: PlacementGroupId,
    /// Unique display name.
    pub name: String,
    /// Apart or together.
    pub policy: GroupPolicy,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl PlacementGroup {
    /// Checks a spec and makes the group.
    pub fn from_spec(spec: &PlacementGroupSpec, now: DateTime<Utc>) -> Result<Self> {
        crate::names::check_name(&spec.name)?;
        Ok(Self {
            id: PlacementGroupId::new(),
            name: spec.name.clone(),
            policy: spec.policy,
            created_at: now,
        })
    }

    /// The rule placement applies for a new member, given the nodes its members are on.
    pub fn rule(&self, member_nodes: Vec<NodeId>) -> GroupRule {
        GroupRule { name: self.name.clone(), policy: self.policy, member_nodes }
    }
}

/// A group's policy as placement applies it to a new member: where the other members are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The group's name, for the reasons.
    pub name: String,
    /// Apart or together.
    pub policy: GroupPolicy,
    /// The nodes the group's VMs are on (each once).
    pub member_nodes: Vec<NodeId>,
}

impl GroupRule {
    /// Whether `node` may take a new member.
    pub fn admits(&self, node: NodeId) -> bool {
        match self.policy {
            GroupPolicy::AntiAffinity => !self.member_nodes.contains(&node),
            GroupPolicy::Affinity => self.member_nodes.is_empty() || self.member_nodes.contains(&node),
        }
    }
}
