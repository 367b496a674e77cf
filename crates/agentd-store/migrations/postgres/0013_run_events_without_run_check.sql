-- A run's events are inserted many times a second, and each row's foreign-key check on `runs` is a
-- query PostgreSQL plans once per connection and keeps: planned while `runs` was small, it scans the
-- whole table, so on a new database every event insert got slower with every run until autovacuum
-- analyzed `runs`. The check guards nothing the store does not: events are only written for a run
-- just inserted or updated in the same transaction, and `delete_sessions` deletes events before
-- their runs (the only path that deletes runs). SQLite's check is a direct index probe and stays.
ALTER TABLE run_events DROP CONSTRAINT run_events_tenant_id_run_id_fkey;
