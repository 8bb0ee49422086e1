"""Who holds connections on a server, from `pg_stat_activity`: the one query and summary that
`manage.py dbstat` and the admin's Databases page (config/adminkit/databases.py) both show."""

from __future__ import annotations

# Client sessions of the whole server (our own excluded), by database, label and state.
ACTIVITY_SQL = """
SELECT datname, coalesce(application_name, ''), coalesce(state, 'unknown'), count(*),
       max(extract(epoch FROM now() - state_change)) FILTER (WHERE state LIKE 'idle in transaction%')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def summarize(rows, database: str) -> dict:
    """One database's part of ACTIVITY_SQL's rows: its connections, by application_name and
    state, and the age of its oldest idle-in-transaction session (seconds, or None)."""
    mine = [r for r in rows if r[0] == database]
    ages = [float(r[4]) for r in mine if r[4] is not None]
    return {
        "connections": sum(int(r[3]) for r in mine),
        "by": [{"application_name": r[1], "state": r[2], "count": int(r[3])} for r in mine],
        "oldest_idle_in_transaction_s": round(max(ages), 3) if ages else None,
    }
