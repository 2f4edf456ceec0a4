//! Capacity: at no instant may the reservations in force for a GPU type
//! exceed its capacity.
//!
//! How it holds under concurrency and across replicas: a booking locks its
//! GPU type's row (`SELECT ... FOR UPDATE`) for the rest of its transaction,
//! then measures the peak use over its days and inserts only if it fits.
//! Bookings of one GPU type therefore run one after another on every replica
//! (bookings of different types do not wait for each other), and the check
//! always sees every committed reservation. Reservations are whole days, so
//! checking each day of the range is exact. Serializable transactions would
//! also be correct but abort and retry under exactly the contention that
//! matters here; per-day counters would allow more parallelism within one
//! type at the cost of one row update per day booked.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct Peak {
    #[diesel(sql_type = BigInt)]
    peak: i64,
}

/// The most units of `gpu_type` in use on any day of `[start, end]`.
pub async fn peak_usage(
    conn: &mut AsyncPgConnection,
    gpu_type: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> QueryResult<i64> {
    let p: Peak = diesel::sql_query(
        "SELECT coalesce(max(used), 0)::bigint AS peak FROM (
             SELECT g.d, sum(r.quantity) AS used
               FROM generate_series($2::date, $3::date, interval '1 day') AS g(d)
               JOIN reservations r
                 ON r.gpu_type = $1 AND r.state IN ('scheduled', 'active')
                AND r.start_date <= g.d::date AND r.end_date >= g.d::date
              GROUP BY g.d) AS per_day",
    )
    .bind::<Text, _>(gpu_type)
    .bind::<Date, _>(start)
    .bind::<Date, _>(end)
    .get_result(conn)
    .await?;
    Ok(p.peak)
}

/// The last day any reservation in force for `gpu_type` covers.
pub async fn last_booked_day(conn: &mut AsyncPgConnection, gpu_type: &str) -> QueryResult<Option<NaiveDate>> {
    use crate::db::schema::reservations;
    reservations::table
        .filter(reservations::gpu_type.eq(gpu_type))
        .filter(reservations::state.eq_any(["scheduled", "active"]))
        .select(diesel::dsl::max(reservations::end_date))
        .first(conn)
        .await
}
