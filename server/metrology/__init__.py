"""Metrology: maximum permissible errors as data, and drift detection over whole fleets.

Modules, one job each:

    tables/*.toml  MPE tables (OIML R 76, OIML R 117 / MID MI-005, national variants)
    mpe.py         reads the tables; exact MPE of one instrument at one load; compiles
                   instruments into integer profiles for the kernels
    normalise.py   baseline of each instrument: mu0, robust sigma, raw-count calibration
    tolerance.py   |r| > 1 out of tolerance, |r| > 0.8 early warning (integer tests)
    cusum.py       two-sided tabular CUSUM on z
    ewma.py        EWMA on z with asymptotic limits
    trend.py       forgetting least squares of r over time -> predicted crossing date
    zero.py        zero drift: the check kernel run over zero readings
    pulses.py      dispenser pulses vs indicated volume (> 0.6 % repeated)
    fold.py        one instrument's fold, one reading at a time, branch-light
    tiles.py       32 instruments folded together in SIMD lanes (the vector path)
    kernels.py     the numba kernel over columnar readings grouped by instrument (tiles
                   in parallel, the rest one at a time), and its validating wrapper
                   (batch = stream: state carried between calls)
    fleet.py       per-instrument state: ok / warning / drifting / out_of_tolerance /
                   overdue_verification, first alarm, predicted crossing
    io.py          CSV / Parquet readers with the column contract (docs/metrology.md)
    storeio.py     the same columns read from a metrotrace store (SQLite / PostgreSQL)
    analysis.py    registry + readings -> fleet report, fed in time slices
    monitor.py     periodic run for the server: state changes -> alert rows / MQTT
    simulate.py    fleets with known truth (ARL0, detection delay)
    cli.py         `metrotrace drift analyze` (files, or a store)

Errors (all are ValueError, so callers that validate input can catch one type):

    MetrologyError(ValueError)
     +-- TableError        an MPE table file is malformed; names the file and the key
     +-- InstrumentError   an instrument's registry entry does not fit its table
     |                     (unknown class, e not allowed, d > Emin / 2 ...); names the field
     +-- InputError        readings rejected by a public wrapper; names the column or
                           parameter and the first offending row
"""

from metrotrace.server import jitcache
from metrotrace.server.metrology.errors import (
    InputError,
    InstrumentError,
    MetrologyError,
    TableError,
)

jitcache.use()  # before any kernel is defined (no module above defines one)

__all__ = ["InputError", "InstrumentError", "MetrologyError", "TableError"]
