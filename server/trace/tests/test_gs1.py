from datetime import date
from decimal import Decimal

import pytest

from metrotrace.server.trace import CodeError, gs1


def test_check_digit_vectors():
    assert gs1.check_digit("950110153100") == 0
    assert gs1.check_digit("9501234") == 6


def test_gs1_128_with_gs_separators_and_symbology():
    code = gs1.parse(b"01095011010209173103001250\x1d39220599\x1d10ABC123\x1d21SN42",
                     symbology="]C1")
    assert code.gtin == "09501101020917"
    assert (code.lot, code.serial, code.net_mg, code.price) == ("ABC123", "SN42", 1_250_000,
                                                                 Decimal("5.99"))
    assert code.symbology == "]C1"
    assert code.epc() == "urn:epc:id:sgtin:950110102.0091.SN42"
    assert code.lot_class() == "urn:epc:class:lgtin:950110102.0091.ABC123"


def test_datamatrix_expiry_and_lot():
    code = gs1.parse("]d2010703206980498817250630100329")
    assert (code.lot, code.expiry) == ("0329", date(2025, 6, 30))
    assert code.digital_link() == "https://id.gs1.org/01/07032069804988/10/0329"


def test_digital_link_uri():
    code = gs1.parse("https://id.gs1.org/01/09506000134352/10/ABC123?17=250630&3103=001250")
    assert (code.gtin, code.lot, code.net_mg) == ("09506000134352", "ABC123", 1_250_000)


@pytest.mark.parametrize("text,region,weight_mg,price", [
    ("2812347012503", "de", 1_250_000, None),
    ("2302148210869", "no", 1_086_000, None),
    ("2001234567893", "se", None, Decimal("67.89")),
])
def test_variable_measure_codes_need_a_region(text, region, weight_mg, price):
    code = gs1.parse(text, region=region)
    assert code.variable_measure and (code.net_mg, code.price) == (weight_mg, price)
    assert gs1.parse(text).net_mg is None  # without a region the layout is unknown


def test_prefix_02_codes_need_a_label_layout():
    """biip has no prefix-02 rules for any region: such a code is a variable-measure
    number without a weight until the site configures its scale's label layout."""
    for region in (None, *gs1.REGIONS):
        code = gs1.parse("0212345012505", region=region)
        assert code.variable_measure and code.net_mg is None and code.price is None, region
    weighed = gs1.parse("0212345012505", region="02IIIIIWWWWWC")
    assert (weighed.gtin, weighed.net_mg, weighed.price) == ("00212345012505", 1_250_000, None)
    priced = gs1.parse("2312345012500", region="23IIIIVPPPPPC")
    assert (priced.net_mg, priced.price) == (None, Decimal("12.50"))
    other = gs1.parse("2812347012503", region="02IIIIIWWWWWC")  # not the layout's prefix
    assert other.variable_measure and other.net_mg is None
    for bad in ("02IIIIIWWWWW9", "02IIIIIWWPPPC", "12IIIIIWWWWWC", "02IIIIIIIIIIC"):
        with pytest.raises(CodeError) as err:
            gs1.parse("0212345012505", region=bad)
        assert err.value.field == "region", bad


def test_bracketed_human_readable_element_strings():
    code = gs1.parse("(01)09501101020917(3103)001250(10)ABC123")
    assert (code.gtin, code.net_mg, code.lot) == ("09501101020917", 1_250_000, "ABC123")
    spaced = gs1.parse("(01)09501101020917 (10)ABC123 (21)SN42", symbology="]C1")
    assert spaced.epc() == "urn:epc:id:sgtin:950110102.0091.SN42"
    with pytest.raises(CodeError) as err:
        gs1.parse("(01)09501101020918(10)X")
    assert err.value.field == "(01)"
    with pytest.raises(CodeError) as err:
        gs1.parse("(47)1234")
    assert err.value.field == "ai"


def test_gtin_12_from_a_upc_a():
    code = gs1.parse("036000291452", symbology="]E0")
    assert code.gtin == "00036000291452" and not code.variable_measure
    assert code.digital_link() == "https://id.gs1.org/01/00036000291452"
    with pytest.raises(CodeError) as err:
        gs1.parse("036000291453")
    assert err.value.field == "gtin"


def test_gtin_formats_and_urn_round_trip():
    assert gs1.parse("95012346").gtin == "00000095012346"
    assert gs1.parse("]E09501101531000").gtin == "09501101531000"
    assert gs1.gtin_of_urn("urn:epc:class:lgtin:950110102.0091.ABC123") == "09501101020917"


@pytest.mark.parametrize("text,field", [
    ("9501101531001", "gtin"),             # GTIN-13 with a wrong check digit
    ("0107032069804989", "(01)"),          # the same inside an element string
    ("01070320698049884700", "ai"),        # AI 47 does not exist
    ("https://id.gs1.org/01/09506000134353", "(01)"),
    ("", "code"),
])
def test_invalid_codes_name_the_field(text, field):
    with pytest.raises(CodeError) as err:
        gs1.parse(text)
    assert err.value.field == field


def test_unknown_region_is_refused():
    with pytest.raises(CodeError) as err:
        gs1.parse("2812347012503", region="xx")
    assert err.value.field == "region"
