"""L4: keys and certificates -- algorithms and key loading (:mod:`.keys`), certificates and chains
(:mod:`.certificates`).

Algorithms and key sources are not signing methods: the ``key`` and ``certificate`` methods both use
them (so a new curve, or a key kept in an HSM, is added here once, for both).
"""
