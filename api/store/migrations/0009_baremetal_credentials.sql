-- Corral schema version 9: deploy credentials that are single-use,
-- short-lived and bound to the node's DHCP lease, and full or quick
-- cleaning.
--
-- agent_token (version 7) is now the boot token: handed once, in the iPXE
-- script, to the node's leased address; agent_token_expires ends it, and
-- agent_token_used_at records that the deploy agent exchanged it for its
-- work (a second use is a replay and is refused). agent_session is the
-- credential the agent then uses for the image and its reports, from
-- agent_ip only. All tokens are sealed with corrald's BMC key and bound to
-- the node's state and attempt.

ALTER TABLE nodes ADD COLUMN agent_token_expires BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN agent_token_used_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN agent_session TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN agent_ip TEXT NOT NULL DEFAULT '';
-- quick_clean is the node's option for the cleaning that follows a server
-- delete (1: metadata only; 0: the whole disk). clean_mode is the mode of
-- the cleaning in progress, "full" or "quick".
ALTER TABLE nodes ADD COLUMN quick_clean INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN clean_mode TEXT NOT NULL DEFAULT '';
