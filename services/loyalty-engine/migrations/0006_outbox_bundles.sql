-- The outbox in bundles: one row per transaction and input partition holds all the messages
-- that transaction queued for it, in order (MessagePack, see `store::outbox`). Rows written
-- before this migration (one message each, in the columns ce_id … headers) are still
-- published as they are.
--
-- A row per message cost more than the message itself: every output was inserted, indexed,
-- locked and deleted on its own, each step with its WAL. With points, nearly every event
-- makes an output (issue 16).
ALTER TABLE outbox
    ALTER COLUMN ce_id DROP NOT NULL,
    ALTER COLUMN topic DROP NOT NULL,
    ALTER COLUMN payload DROP NOT NULL,
    ALTER COLUMN headers DROP NOT NULL,
    -- The bundle; NULL for a row of the old form.
    ADD COLUMN messages bytea,
    -- How many messages the row holds.
    ADD COLUMN message_count integer NOT NULL DEFAULT 1,
    -- The topics the bundle's messages go to (the relay's recovery scan reads them back).
    ADD COLUMN topics text[],
    ADD CONSTRAINT outbox_one_form CHECK (
        (messages IS NOT NULL AND topics IS NOT NULL AND message_count >= 1)
        OR (messages IS NULL AND ce_id IS NOT NULL AND topic IS NOT NULL
            AND payload IS NOT NULL AND headers IS NOT NULL AND message_count = 1));

-- lz4 is cheap enough to run in the write path, and bundles of JSON compress well.
ALTER TABLE outbox ALTER COLUMN messages SET COMPRESSION lz4;
