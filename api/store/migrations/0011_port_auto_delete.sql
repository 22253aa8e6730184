-- Corral schema version 11: a port that a server create made for it
-- (ServerCreate.networks, corralctl server create --network) is marked
-- auto_delete and is deleted, with its addresses, when its server's delete
-- completes. Ports created explicitly (POST /v1/ports) keep auto_delete 0
-- and are only unplugged, as before.

ALTER TABLE ports ADD COLUMN auto_delete BIGINT NOT NULL DEFAULT 0;
