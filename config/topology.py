"""The database topology: which databases exist and which apps live in each.

This is the only file that names aliases. Everything else (the settings, the router, the
commands, the budget, the test harness) reads it. Adding a domain database is one
`Domain(...)` line here plus its app.

Per domain `<alias>` the process gets up to three aliases:
    <alias>           the web/cli pool (application_name `<role>:<alias>`)
    <alias>_jobs      a small pool for long jobs (`jobs:<alias>`)
    <alias>_replica   read-only, when `<P>_DATABASE_REPLICA_URL` is set
"""

from config.multidb.conf.topology import Domain

# `default` is the shared database; apps not listed anywhere (third-party ones) also live
# there, so nothing is ever unrouted.
TOPOLOGY: tuple[Domain, ...] = (
    Domain("default", "SHARED", ("auth", "contenttypes", "sessions", "admin", "audit", "users", "axes")),
    Domain("blog", "BLOG", ("blog",)),
    Domain("market", "MARKET", ("market",)),
)
