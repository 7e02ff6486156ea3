"""Pure decisions: what the data plane does next, as functions of rows and the clock.

- ``planning``: what a due schedule gets now (Beat).
- ``attempts``: what a failed attempt becomes: retry, dead, stays failed, worker lost.
- ``ownership``: whether a delivered message may run its run, or take it over.

No SQL, no broker, no I/O and no clock: callers read the rows, pass ``now`` and record the
answer through the store.
"""
