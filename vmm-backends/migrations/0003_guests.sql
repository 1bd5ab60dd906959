-- Usable servers: OS images and the nodes that hold a copy, recipes, networks; VMs with
-- NICs, an image and guest settings; tasks that name the image they install from.

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL -- the Image as JSON
);

-- A node's copy of an image: being uploaded (ready = 0) by whoever claimed it until
-- claimed_until_us, or complete (ready = 1).
CREATE TABLE node_images (
    node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    ready BIGINT NOT NULL,
    claimed_until_us BIGINT,
    PRIMARY KEY (node_id, image_id)
);
CREATE INDEX node_images_by_image ON node_images (image_id);

CREATE TABLE recipes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    recipe TEXT NOT NULL -- the Recipe as JSON
);

-- A bridge (with its VLAN tag, -1 for none) belongs to one network.
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL,
    vlan BIGINT NOT NULL,
    network TEXT NOT NULL, -- the Network as JSON
    UNIQUE (bridge, vlan)
);

-- The network a pool's addresses live on; a network with pools cannot be deleted.
ALTER TABLE ip_pools ADD COLUMN network_id TEXT REFERENCES networks (id);
CREATE INDEX ip_pools_by_network ON ip_pools (network_id);

-- NULL nics: a VM of the first release, with one user-mode NIC holding its addresses.
ALTER TABLE vms ADD COLUMN image_id TEXT;
ALTER TABLE vms ADD COLUMN hostname TEXT;
ALTER TABLE vms ADD COLUMN nics TEXT; -- JSON array of VmNic
ALTER TABLE vms ADD COLUMN guest TEXT; -- the VmGuest as JSON

-- The image a task installs from or imports: an image is not deleted under an active task.
ALTER TABLE tasks ADD COLUMN image_id TEXT;
CREATE INDEX tasks_by_image ON tasks (image_id) WHERE state IN ('queued', 'running');
