"""The client, one module per hop of the data flow.

Receiving: python-engineio's read thread -> :mod:`.delivery` (parse, skip own)
-> :mod:`.inbox` -> the caller (``receive``/``messages``) or :mod:`.handler`'s
pool.  Sending: the caller (:mod:`.bot`) -> :mod:`.requests` (the one table)
-> :mod:`.link` (the wire) -> the ack on the read thread -> :mod:`.requests`
settles the future.  :mod:`.connection` holds the state machine, the
supervisor and the rooms; :mod:`.counters` what ``Bot.stats`` reads.
"""
