"""The normalisation core: pure functions and frozen dataclasses, no I/O (sans-I/O, like h11).

Clock, ids and random UDH references come in as arguments so every decision is reproducible.
"""
