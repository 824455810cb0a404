-- The roles of a denylist fleet (docs/fleet.md). Run once, as a superuser,
-- before `denylistd --init-fleet` (which its owner runs, and which grants
-- the group role what a node may do). The fleet tests run this file.

-- The database's owner creates the tables; no node logs in as it.
CREATE ROLE denylist_owner LOGIN;
CREATE DATABASE denylist OWNER denylist_owner;

-- Every node's login role is a member of this group: it may read the
-- fleet's tables, append to the log and write its own row of `nodes`,
-- and nothing else.
CREATE ROLE denylist_node NOLOGIN;

-- Then one login role per node, with its own password, e.g.:
--   CREATE ROLE edge1 LOGIN PASSWORD 'a long random secret' IN ROLE denylist_node;
