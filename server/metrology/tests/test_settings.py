"""Drift settings files: what they hold, what they refuse (naming the key), and that an
absent file means the engine's defaults."""

import math

import pytest

from metrotrace.server.metrology import InputError, kernels, settings


def test_a_settings_file_round_trips_and_an_absent_one_means_the_defaults(tmp_path):
    s = settings.Settings(kernels.Params(baseline=50, confirm_within=12),
                          {"MKT1-S1": 2.5, "MKT1-S2": 2.5})
    settings.write(tmp_path / settings.FILE, s)
    back = settings.for_data_dir(tmp_path)
    assert back == s and back.as_dict()["cusum"] == {"k": 0.5, "h": 4.77}
    sigma = back.sigma(["MKT1-S2", "STN1-P1"])
    assert sigma[0] == 2.5 and math.isnan(sigma[1])
    assert settings.for_data_dir(tmp_path / "nothing") == settings.Settings()
    assert settings.Settings().sigma(["A"]) is None
    toml = tmp_path / "drift.toml"
    toml.write_text('baseline = 40\n[ewma]\nlam = 0.1\n[check_sigma]\n"S-1" = 1.5\n')
    t = settings.load(toml)
    assert (t.params.baseline, t.params.ewma.lam, t.check_sigma) == (40, 0.1, {"S-1": 1.5})


@pytest.mark.parametrize("content, field", [
    ({"baseline": "50"}, "baseline: expected an integer"),
    ({"baseline": 2}, "baseline: must be 3..10000"),
    ({"check_sigma": {"S1": 0}}, "check_sigma.S1: must be positive"),
    ({"check_sigma": {"S1": "2.5"}}, "check_sigma.S1: expected a number"),
    ({"check_sigma": [2.5]}, "check_sigma: expected a table"),
    ({"cusum": {"h": 4, "x": 1}}, "cusum.x: unknown key"),
    ({"ewma": {"lam": 2}}, "lam: EWMA weight"),
    ({"sigma": {}}, "settings.sigma: unknown key"),
    ([], "settings: expected a table"),
])
def test_a_bad_setting_is_refused_naming_its_key(content, field):
    with pytest.raises(InputError, match=field.replace(".", r"\.").replace("(", r"\(")):
        settings.parse(content)


def test_an_unreadable_file_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json is not valid json"):
        settings.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="cannot read"):
        settings.load(tmp_path / "none.json")


def test_a_command_takes_its_file_else_the_data_directorys_else_the_defaults(tmp_path):
    settings.write(tmp_path / settings.FILE, settings.Settings(kernels.Params(baseline=50)))
    other = settings.write(tmp_path / "other.json",
                           settings.Settings(kernels.Params(baseline=40)))
    assert settings.resolve(other, tmp_path, None).params.baseline == 40
    assert settings.resolve(None, tmp_path, None).params.baseline == 50
    # a PostgreSQL store has no data directory: only an explicit file applies
    assert settings.resolve(None, tmp_path, "postgresql://x/y") == settings.Settings()
