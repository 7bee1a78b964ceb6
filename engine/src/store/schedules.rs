//! Fired slots of scheduled pipelines. A slot is a minute (since the Unix epoch, UTC) at which
//! a cron expression fires; `schedule_slots` keeps, per schedule, the latest slot taken. Taking
//! a slot is one conditional `UPDATE` in the same transaction as the run it starts, so two
//! servers on one store start it once, and a server that was down starts at most one run for
//! everything it missed.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::model::{NewRun, insert_run};

/// What to do with a schedule at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAction {
    /// First sight of the schedule: remember `slot` as seen, start nothing (a new schedule
    /// waits for its next slot, as in GitHub Actions).
    Baseline(i64),
    /// Start a run for `slot`: the latest slot that is due and was not taken. Missed slots
    /// before it are skipped (one catch-up run, not a backlog).
    Fire(i64),
    /// Nothing is due.
    Wait,
}

/// The decision, from the latest slot taken (`None`: never seen) and the latest slot due
/// (`None`: the expression never fired before now). Pure.
pub fn decide(last: Option<i64>, due: Option<i64>, now: i64) -> SlotAction {
    match (last, due) {
        (None, Some(due)) => SlotAction::Baseline(due),
        (None, None) => SlotAction::Baseline(now),
        (Some(last), Some(due)) if due > last => SlotAction::Fire(due),
        _ => SlotAction::Wait,
    }
}

/// The latest slot taken of `schedule`.
pub fn last_slot(conn: &Connection, schedule: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT last_slot FROM schedule_slots WHERE schedule = ?1",
            params![schedule],
            |r| r.get(0),
        )
        .optional()?)
}

/// One tick of `schedule`: decide with `due` (the latest slot at or before now) and apply it in
/// this transaction. Returns the slot fired, when this caller fired one; `make_run` builds the
/// run for it, which is inserted with the claim.
pub fn tick_schedule(
    conn: &Connection,
    schedule: &str,
    due: Option<i64>,
    now_minute: i64,
    now_ms: i64,
    make_run: impl FnOnce(i64) -> NewRun,
) -> Result<Option<(i64, String)>, StoreError> {
    match decide(last_slot(conn, schedule)?, due, now_minute) {
        SlotAction::Baseline(slot) => {
            conn.execute(
                "INSERT INTO schedule_slots (schedule, last_slot, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (schedule) DO NOTHING",
                params![schedule, slot, now_ms],
            )?;
            Ok(None)
        }
        SlotAction::Fire(slot) => {
            let run = make_run(slot);
            let claimed = conn.execute(
                "UPDATE schedule_slots SET last_slot = ?2, run_id = ?3, updated_at = ?4
                 WHERE schedule = ?1 AND last_slot < ?2",
                params![schedule, slot, run.id, now_ms],
            )?;
            if claimed == 1 {
                insert_run(conn, &run, now_ms)?;
                Ok(Some((slot, run.id)))
            } else {
                Ok(None)
            }
        }
        SlotAction::Wait => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_schedule_waits_for_its_next_slot() {
        assert_eq!(decide(None, Some(100), 105), SlotAction::Baseline(100));
        assert_eq!(decide(None, None, 105), SlotAction::Baseline(105));
    }

    #[test]
    fn a_due_slot_fires_once_and_then_waits() {
        assert_eq!(decide(Some(100), Some(101), 101), SlotAction::Fire(101));
        assert_eq!(decide(Some(101), Some(101), 101), SlotAction::Wait);
        assert_eq!(decide(Some(101), Some(101), 150), SlotAction::Wait);
    }

    #[test]
    fn after_downtime_only_the_latest_missed_slot_fires() {
        // Down from slot 100 to 400 on a per-minute schedule: one run, for 400.
        assert_eq!(decide(Some(100), Some(400), 400), SlotAction::Fire(400));
        assert_eq!(decide(Some(400), Some(400), 400), SlotAction::Wait);
    }

    #[test]
    fn two_servers_on_one_store_fire_a_slot_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let run = |slot: i64| NewRun {
            id: format!("run-{slot}-{}", uuid::Uuid::now_v7()),
            trigger: "schedule".into(),
            max_attempts: 1,
            inputs: serde_json::json!({}),
            event: serde_json::json!({}),
            ..NewRun::default()
        };
        // Both see the schedule first at minute 10: a baseline, no run.
        assert_eq!(
            tick_schedule(&conn, "s", Some(10), 10, 0, run).unwrap(),
            None
        );
        assert_eq!(
            tick_schedule(&conn, "s", Some(10), 10, 0, run).unwrap(),
            None
        );
        // Minute 11 is due: the first tick takes it, the second (the other server) does not.
        let first = tick_schedule(&conn, "s", Some(11), 11, 0, run).unwrap();
        assert_eq!(first.map(|(slot, _)| slot), Some(11));
        assert_eq!(
            tick_schedule(&conn, "s", Some(11), 11, 0, run).unwrap(),
            None
        );
        let runs: i64 = conn
            .query_row(
                "SELECT count(*) FROM runs WHERE trigger = 'schedule'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(runs, 1);
    }
}
