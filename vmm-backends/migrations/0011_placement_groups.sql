-- Placement groups: VMs kept apart (anti-affinity) or together (affinity). A VM names its
-- group; a group with VMs cannot go (checked in the delete's transaction).
CREATE TABLE placement_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL -- the PlacementGroup as JSON
);
ALTER TABLE vms ADD COLUMN placement_group_id TEXT;
CREATE INDEX vms_by_placement_group ON vms (placement_group_id, node_id);
