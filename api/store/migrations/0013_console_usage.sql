-- Corral schema version 12 (issue 15): serial consoles through the API and
-- usage history for right-sizing. Both are observed state, kept apart from
-- the servers' rows, so that neither bumps a revision a user holds.

-- The newest console output of each VM, as its host's agent uploads it:
-- data is at most 64 KiB of valid UTF-8 cut at a line start; end_seq counts
-- every byte ever kept (data ends there, so cursors survive the cut);
-- src_offset is where the agent's next chunk starts in the console log on
-- the host (a chunk sent twice is kept once).
CREATE TABLE server_consoles (
    server_id  TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    end_seq    BIGINT NOT NULL,
    src_offset BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Usage history, one row per server and hour (hour = unix seconds / 3600):
-- CPU in hundredths of a percent of the flavor's vCPUs (sum over samples
-- and peak), memory used in KiB (sum and peak). At most 8 days are kept.
CREATE TABLE server_usage (
    server_id   TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    samples     BIGINT NOT NULL,
    cpu_sum     BIGINT NOT NULL,
    cpu_max     BIGINT NOT NULL,
    mem_samples BIGINT NOT NULL,
    mem_sum     BIGINT NOT NULL,
    mem_max     BIGINT NOT NULL,
    PRIMARY KEY (server_id, hour)
);
CREATE INDEX server_usage_hour ON server_usage (hour);

-- The last cumulative CPU counter of each server and when corrald took it,
-- from which the next report's CPU use is computed.
CREATE TABLE server_usage_last (
    server_id   TEXT PRIMARY KEY,
    cpu_time_ns BIGINT NOT NULL,
    at          BIGINT NOT NULL
);

-- Input typed into a VM's console through the API, waiting for its host's
-- agent to take it (at most 64 entries per server; entries older than a
-- minute are dropped, never typed late).
CREATE TABLE server_console_input (
    server_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    host_id    TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, seq)
);
CREATE INDEX server_console_input_host ON server_console_input (host_id, created_at);
