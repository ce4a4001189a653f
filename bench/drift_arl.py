"""Known-truth figures of the drift detectors, from the real kernel on simulated fleets.

Prints: ARL0 (in control) of CUSUM and EWMA with known parameters (design: 369 / 371) and
with parameters estimated from a 30- and a 100-reading baseline; detection delay for a
1 sigma shift (zero state and steady state) and for a 0.5 MPE shift on a class III scale
(Max 15 kg, e = 5 g, check at 10 kg: in-service MPE 10 g) with raw counts (sigma 1 g) and
with indications only; and the fleet false-alarm rate for 10,000 instruments checked once
a day for a year, as chart signals and as confirmed signals ("drifting": a second signal
within Params.confirm_within readings). Last line: one JSON object. `--quick` uses fewer
instruments.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from metrotrace.server.metrology import kernels, simulate
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import Instrument

SCALE_III = Instrument("scale", "oiml-r76", "III", "g", 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 2000 if args.quick else 10_000
    out: dict = {}
    a = simulate.arl0(n, 1000, seed=1)
    out["arl0_known"] = {k: round(a[k], 1) for k in ("cusum", "ewma", "confirmed")}
    for base in (30, 100):
        a = simulate.arl0(n, 1000, seed=2, known=False, params=kernels.Params(baseline=base))
        out[f"arl0_estimated_baseline_{base}"] = {k: round(a[k], 1)
                                                  for k in ("cusum", "ewma", "confirmed")}
    for name, zero_state in (("zero_state", True), ("steady_state", False)):
        d = simulate.delay(n, 1.0, seed=3, zero_state=zero_state)
        out[f"delay_1sigma_{name}"] = {"cusum": round(d["cusum"], 2), "ewma": round(d["ewma"], 2)}
    # 0.5 MPE = 5 g at 10 kg on the class III scale; check-process sigma 1 g.
    for name, gain in (("raw_counts", 200.0), ("indication_only", None)):
        d = simulate.delay(n, 5.0, seed=4, inst=SCALE_III, sigma=1.0, load=10_000,
                           raw_gain=gain, known=False, before=100, after=100)
        out[f"delay_half_mpe_{name}"] = {k: (round(v, 2) if isinstance(v, float) else v)
                                         for k, v in d.items()}
    # Fleet: 10,000 in-control instruments, one check a day for 365 days, estimated baseline
    # of 30 (so 335 charted days), and with known sigma.
    for name, base in (("estimated_baseline_30", 30), ("estimated_baseline_100", 100),
                       ("known_sigma", 0)):
        checks = simulate.fleet(10_000, 365, seed=5)
        state = S.new(10_000, base or 30, mu0=None if base else 0.0,
                      sigma=None if base else np.full(10_000, 1000.0))
        v = kernels.scan(simulate.spec_for(10_000), checks, state,
                         kernels.Params(baseline=base or 30)).values
        days = 365 - base
        signals = v[:, S.N_CUSUM] + v[:, S.N_EWMA]
        out[f"fleet_10000_{name}"] = {
            "false_signals_per_day": round(float(signals.sum()) / days, 1),
            "false_drifting_per_day": round(float(v[:, S.N_CONFIRMED].sum()) / days, 2),
            "instruments_flagged_in_a_year": round(float(np.mean(signals > 0)), 3),
            "instruments_drifting_in_a_year": round(float(np.mean(v[:, S.N_CONFIRMED] > 0)),
                                                    3)}
    for key, value in out.items():
        print(f"{key}: {value}")
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
