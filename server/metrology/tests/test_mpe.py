"""MPE tables: the worked examples of research/metrology.md, and the kernels' integer
profiles agree with the exact Fractions everywhere."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.server.metrology import InstrumentError, TableError, mpe, tables
from metrotrace.server.metrology.mpe import Instrument

T = tables.load()


def scale(max_e_g, e, cls="III", unit="g"):
    return Instrument(f"scale-{max_e_g}", "oiml-r76", cls, unit, e)


@pytest.mark.parametrize("e, loads_and_initial", [
    # research §1.2 worked examples, class III, d = e: (load, initial MPE)
    (2, [(1000, 1), (1002, 2), (4000, 2), (4002, 3), (6000, 3)]),  # Max 6 kg
    (5, [(2500, Fraction(5, 2)), (2505, 5), (10000, 5), (10005, Fraction(15, 2)),
         (15000, Fraction(15, 2))]),  # Max 15 kg
    (10, [(5000, 5), (5010, 10), (20000, 10), (20010, 15), (30000, 15)]),  # Max 30 kg
])
def test_r76_class_iii_worked_examples_and_in_service_is_twice(e, loads_and_initial):
    inst = scale(0, e)
    for load, initial in loads_and_initial:
        assert mpe.mpe(inst, load, T, in_service=False) == initial
        assert mpe.mpe(inst, load, T) == 2 * initial


def test_boundary_500e_is_the_lower_band_and_min_per_class():
    inst = scale(15, 5)
    assert mpe.mpe(inst, 500 * 5, T, in_service=False) == Fraction(5, 2)
    assert mpe.mpe(inst, 500 * 5 + 1, T, in_service=False) == 5
    assert mpe.min_capacity(inst, T) == 100  # 20 e: research table, Max 15 kg -> Min 100 g
    assert mpe.min_capacity(scale(0, 10, "II", "mg"), T) == 200  # e = 0.01 g: 20 e
    assert mpe.min_capacity(scale(0, 100, "II", "mg"), T) == 5000  # e = 0.1 g: 50 e
    assert mpe.min_capacity(scale(0, 5, "IIII"), T) == 50
    assert mpe.mpe(inst, 10001 * 5, T) is None  # beyond the class III table: no limit


def dispenser(mmq=2000, line="A", d=10, table="oiml-r117", cls="0.5"):
    return Instrument("pump", table, cls, "mL", d, mmq=mmq, line=line)


@pytest.mark.parametrize("mmq, volume, system, meter", [
    # research §2.1 worked examples, class 0.5
    (2000, 2000, 20, 6), (2000, 5000, 25, 15), (2000, 20000, 100, 60),
    (5000, 10000, 50, 30), (5000, 50000, 250, 150),
])
def test_r117_class_0_5_worked_examples(mmq, volume, system, meter):
    assert mpe.mpe(dispenser(mmq), volume, T) == system
    assert mpe.mpe(dispenser(mmq, "B"), volume, T) == meter


def test_r117_small_volumes_emin_and_resolution():
    small = dispenser(mmq=500, d=1)  # MMQ < 2 L: Emin = 2 x small-volume MPE at the MMQ
    assert mpe.emin(small, T) == 2 * Fraction(5, 1000) * 2 * 500  # 2 x (2 x 0.5 %) x 0.5 L
    assert mpe.mpe(Instrument("p", "oiml-r117", "1.0", "mL", 1, mmq=100, line="B"), 50, T) \
        == Fraction(4 * 6, 1000) * 100  # V < 0.1 L: 4 x B applied to 0.1 L
    assert mpe.mpe(dispenser(d=10), 20000, T) == 100
    with pytest.raises(InstrumentError, match=r"^e: indicating interval 20 mL exceeds Emin/2"):
        mpe.mpe(dispenser(d=20), 20000, T)  # MMQ 2 L needs R <= 10 mL
    with pytest.raises(InstrumentError, match=r"^mmq: "):
        mpe.mpe(dispenser(mmq=None), 20000, T)


def test_national_variants():
    assert mpe.mpe(dispenser(table="cn-jjg443", cls="dispenser"), 20000, T) == 60  # 0.30 %
    assert mpe.mpe(dispenser(table="cn-jjg443", cls="dispenser"), 2000, T) == 10  # 0.5 % at MMQ
    canada = Instrument("pump", "ca-mc-dispenser", "retail", "mL", 10)
    assert mpe.mpe(canada, 20000, T) == 100 and mpe.mpe(canada, 20000, T, in_service=False) == 50
    assert mpe.mpe(canada, 4999, T) is None
    cn = Instrument("s", "cn-jjg539", "III", "g", 5)
    assert mpe.mpe(cn, 15000, T) == 15


def test_a_regulator_adds_a_table_without_code(tmp_path):
    (tmp_path / "xx.toml").write_text(
        'id = "xx-scales"\ntitle = "t"\nkind = "weighing"\nload_unit = "e"\nmpe_unit = "e"\n'
        '[in_service]\nfactor = "1"\n[classes.market]\n'
        'bands = [{ upto = "1000", mpe = "1" }, { mpe = "2" }]\n')
    mine = tables.load(tmp_path)
    inst = Instrument("s", "xx-scales", "market", "g", 5)
    assert mpe.mpe(inst, 5000, mine) == 5 and mpe.mpe(inst, 5005, mine) == 10
    (tmp_path / "xx.toml").write_text((tmp_path / "xx.toml").read_text().replace(
        'mpe = "2"', 'mpe = "2", slope = "1"'))
    with pytest.raises(TableError, match=r"^xx.toml: classes.market.bands\[1\]: unknown key"):
        tables.load(tmp_path)


EVERY = [(Instrument("s", "oiml-r76", c, "mg", e), 10**6 * e)
         for c in ("I", "II", "III", "IIII") for e in (1, 5, 100)]
EVERY += [(dispenser(mmq, line, d, "oiml-r117", c), 200_000)
          for c in ("0.3", "0.5", "1.0", "1.5", "2.5") for line in ("A", "B")
          for mmq, d in ((500, 1), (2000, 5), (5000, 10))]
EVERY += [(dispenser(2000, "A", 10, "cn-jjg443", "dispenser"), 100_000),
          (Instrument("c", "ca-mc-dispenser", "retail", "mL", 10), 100_000),
          (Instrument("c", "ca-mc-dispenser", "retail", "L", 1), 100)]


@given(st.sampled_from(EVERY), st.floats(0, 1))
def test_integer_profiles_equal_exact_mpe(case, where):
    inst, top = case
    profiles = mpe.compile_profiles([inst], T)
    for load in {int(where * top), int(where * top) + 1, 0, 1}:
        q = mpe.mpe_q(0, np.int64(load), profiles.start, profiles.upper, profiles.fixed_q,
                      profiles.coef, profiles.at_q, profiles.emin_q)
        exact = mpe.mpe(inst, load, T)
        assert (q == mpe.UNCOVERED) if exact is None else Fraction(int(q), mpe.SCALE) == exact
