"""The benchmark's own operations and the floor: the minimal correct protocol, by hand.

Installed only by ``bench/settings.py``: a cheap operation (token auth + one INSERT of a note),
a hot-row operation (every request updates one counter row), and the hand-written protocol
(``bench.floor.protocol``) that measures what any correct idempotency layer must pay.
"""
