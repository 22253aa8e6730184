-- Corral schema version 5: guests on compute hosts. The host's agent reports
-- what it observes of each guest (domain, applied QoS, counters), and a
-- reboot is a request counter the agent carries out once.
ALTER TABLE servers ADD COLUMN observed TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN reboot_seq BIGINT NOT NULL DEFAULT 0;
