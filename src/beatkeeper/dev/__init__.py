"""`beatkeeper dev`: the whole stack on one machine, no cluster.

Embedded PostgreSQL and Redis (unless the settings point elsewhere), the same migrations
and the same `apply_schedule` as production, and Beat, a worker and Flower as child
processes with one merged console log. Nothing here is used by a deployed component.
"""
