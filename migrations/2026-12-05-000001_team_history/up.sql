-- A team can be deleted once it owns no live instance (any state but
-- 'destroyed') and no reservation in force ('scheduled' or 'active'). Its
-- history (destroyed instances, completed or cancelled reservations) stays,
-- and keeps naming the team it belonged to.
--
-- Only live rows are tied to the team by a foreign key: a generated column
-- holds team_id while the row is live and NULL once it is history, and the
-- RESTRICT key is on that column. So the database itself refuses deleting a
-- team with live resources, and a concurrent insert of one (its key check
-- locks the team row, as the delete does); history does not hold the team.
--
-- Why not a nullable team_id with ON DELETE SET NULL: it would lose which
-- team a destroyed instance or a finished reservation belonged to (cost
-- attribution), would turn a team's history into org-level rows (a NULL
-- reservations.team_id already means "booked org-wide"), and would make
-- instances.team_id nullable in the API. Kept, a deleted team's id simply
-- names no team any more; nothing joins these rows to teams, and only an
-- org-wide role reads them (no one holds a role in a deleted team).

ALTER TABLE instances DROP CONSTRAINT instances_team_id_fkey;
ALTER TABLE instances
    ADD COLUMN live_team_id uuid
        GENERATED ALWAYS AS (CASE WHEN state <> 'destroyed' THEN team_id END) STORED
        CONSTRAINT instances_live_team_fkey REFERENCES teams (id) ON DELETE RESTRICT;
-- For the key check of a team's deletion.
CREATE INDEX instances_live_team ON instances (live_team_id) WHERE live_team_id IS NOT NULL;

ALTER TABLE reservations DROP CONSTRAINT reservations_team_id_fkey;
ALTER TABLE reservations
    ADD COLUMN live_team_id uuid
        GENERATED ALWAYS AS (CASE WHEN state IN ('scheduled', 'active') THEN team_id END) STORED
        CONSTRAINT reservations_live_team_fkey REFERENCES teams (id) ON DELETE RESTRICT;
CREATE INDEX reservations_live_team ON reservations (live_team_id) WHERE live_team_id IS NOT NULL;
