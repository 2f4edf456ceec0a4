-- The history of teams deleted meanwhile names teams that no longer exist:
-- the restored keys are NOT VALID (checked for new and changed rows only).
DROP INDEX reservations_live_team;
ALTER TABLE reservations DROP COLUMN live_team_id;
ALTER TABLE reservations ADD CONSTRAINT reservations_team_id_fkey
    FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE RESTRICT NOT VALID;

DROP INDEX instances_live_team;
ALTER TABLE instances DROP COLUMN live_team_id;
ALTER TABLE instances ADD CONSTRAINT instances_team_id_fkey
    FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE RESTRICT NOT VALID;
