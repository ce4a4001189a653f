"""GS1 barcodes → identifiers, with biip doing the parsing.

Invariant: `parse` either returns a `Code` whose identifiers are valid GS1 (check digits
verified, every Application Identifier known to the GS1 AI table) or raises `CodeError`
naming the field at fault. Measured values come out as integers in base units (mg, mL),
never floats. Variable-measure codes (prefix 02, 20–29) carry a weight or price only under
a configured region, because each national GS1 office sets its own layout: a biip region
(`REGIONS`; biip knows prefixes 20–29 only, and only some of them per country) or a label
layout pattern (`rcn.py`, e.g. `02IIIIIWWWWWC`). Human-readable element strings with
bracketed AIs, `(01)…(10)…`, parse like scanned ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from urllib.parse import quote

import biip
from biip import ParseConfig
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.rcn import Rcn

from . import CodeError, rcn

# ISO/IEC 15424 identifiers a scanner may prefix: GS1-128, GS1 DataMatrix, GS1 QR, EAN/UPC,
# GS1 DataBar. Anything else is read as plain text and must still parse as GS1.
GS = "\x1d"
_GS1_MESSAGE_SYMBOLOGIES = ("]C", "]d", "]Q", "]e")
REGIONS = {"dk": "dk", "ee": "ee", "fi": "fi", "de": "de", "gb": "gb", "lv": "lv",
           "lt": "lt", "no": "no", "se": "se"}
DIGITAL_LINK_ROOT = "https://id.gs1.org"

_URN_SAFE = "-_.!'()*:;=@$,+"  # EPC Tag Data Standard: characters kept as-is in serials


@dataclass(frozen=True)
class Code:
    """One scanned code, reduced to what traceability uses."""

    gtin: str | None = None  # 14 digits
    lot: str | None = None  # AI (10)
    serial: str | None = None  # AI (21)
    sscc: str | None = None  # AI (00), 18 digits
    expiry: date | None = None  # AI (17)
    net_mg: int | None = None  # AI (310n) or a variable-measure code's weight
    net_ml: int | None = None  # AI (315n) litres
    price: Decimal | None = None  # AI (392n)/(393n) or a variable-measure code's price
    currency: str | None = None  # ISO 4217 numeric code from (393n)
    count: int | None = None  # AI (30)
    variable_measure: bool = False  # a restricted-circulation number from a scale
    company_prefix: str | None = None
    symbology: str | None = None
    ais: dict[str, str] = field(default_factory=dict)

    def epc(self) -> str:
        """The EPC of what was scanned: SSCC, SGTIN, LGTIN class, or GTIN class."""
        if self.sscc:
            return sscc_urn(self.sscc, self.company_prefix) or self.digital_link()
        if self.gtin is None:
            raise CodeError("gtin", "code names no GTIN or SSCC")
        if self.serial is not None:
            return sgtin_urn(self.gtin, self.serial, self.company_prefix) or self.digital_link()
        if self.lot is not None:
            return lgtin_urn(self.gtin, self.lot, self.company_prefix) or self.digital_link()
        return self.digital_link()

    def lot_class(self) -> str | None:
        """The lot's class URN (what quantities are counted against), if a lot was read."""
        if self.gtin is None or self.lot is None:
            return None
        return lgtin_urn(self.gtin, self.lot, self.company_prefix) or digital_link(
            self.gtin, lot=self.lot)

    def digital_link(self) -> str:
        if self.sscc:
            return f"{DIGITAL_LINK_ROOT}/00/{self.sscc}"
        if self.gtin is None:
            raise CodeError("gtin", "code names no GTIN or SSCC")
        return digital_link(self.gtin, lot=self.lot, serial=self.serial)


def check_digit(payload: str) -> int:
    """GS1 General Specifications §7.9.1: weights 3,1,3,… from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def parse(code: bytes | str, symbology: str | None = None, region: str | None = None) -> Code:
    """Parse raw scanner text (GS kept) into a Code; raise CodeError on anything invalid."""
    text = code.decode("ascii", "strict") if isinstance(code, bytes) else code
    if symbology and not text.startswith(("]", "(")):
        text = symbology + text
    text = text.strip("\r\n")
    if not text:
        raise CodeError("code", "empty")
    layout = None
    if region is not None and rcn.is_layout(region):
        layout, region = rcn.parse_layout(region), None
    elif region is not None and region.lower() not in REGIONS:
        raise CodeError("region", f"no variable-measure rules for {region!r}")
    config = ParseConfig(rcn_region=REGIONS[region.lower()] if region else None,
                         separator_chars=[GS])
    if text.startswith("("):  # human-readable: (01)09501101020917 (10)ABC123
        try:
            message = GS1Message.parse_hri(re.sub(r"\s+(?=\()", "", text), config=config)
        except biip.ParseError as exc:
            raise _code_error(str(exc)) from exc
        return _from_elements(message.element_strings, None)
    try:
        result = biip.parse(text, config=config)
    except biip.ParseError as exc:
        raise _code_error(str(exc)) from exc
    sym = result.symbology_identifier.value if result.symbology_identifier else None
    # A bare 8–14 digit string parses both as a GTIN and as an element string (e.g. AI 95):
    # unless the symbology says GS1-128 / DataMatrix / QR, a GTIN is what a scanner meant.
    bare = text[3:] if sym else text
    message_symbology = (sym or "")[:2] in _GS1_MESSAGE_SYMBOLOGIES
    if not message_symbology and bare.isdigit() and len(bare) in (8, 12, 13, 14):
        if result.gtin is None:
            raise CodeError("gtin", result.gtin_error or "not a GTIN")
        return _from_gtin(result.gtin, sym, layout)
    if result.gs1_message is not None:
        return _from_elements(result.gs1_message.element_strings, sym)
    if result.gs1_digital_link_uri is not None:
        return _from_elements(result.gs1_digital_link_uri.element_strings, sym)
    if result.gtin is not None:
        return _from_gtin(result.gtin, sym, layout)
    if result.sscc is not None:
        return Code(sscc=result.sscc.value, symbology=sym,
                    company_prefix=_prefix(result.sscc.company_prefix))
    raise _code_error(result.gs1_message_error or result.gs1_digital_link_uri_error
                      or result.gtin_error or "not a GS1 code")


def _code_error(message: str) -> CodeError:
    # biip's messages name the failing part in prose; turn them into a field name.
    if "check digit" in message:
        return CodeError("gtin", message)
    if "Application Identifier" in message:
        return CodeError("ai", "unknown Application Identifier: " + message)
    return CodeError("code", message)


def _prefix(company_prefix: object) -> str | None:
    return getattr(company_prefix, "value", None)


def _from_gtin(gtin: Gtin, sym: str | None, layout: rcn.Layout | None = None) -> Code:
    code = Code(gtin=gtin.as_gtin_14(), symbology=sym,
                company_prefix=_prefix(gtin.company_prefix))
    if isinstance(gtin, Rcn):
        weight_mg = int(gtin.weight * 1_000_000) if gtin.weight is not None else None
        price = gtin.price
        if layout is not None:
            weight_mg, price = rcn.measure(layout, gtin.as_gtin_13())
        return Code(gtin=code.gtin, symbology=sym, variable_measure=True, net_mg=weight_mg,
                    price=price, count=gtin.count)
    return code


def _from_elements(elements: list, sym: str | None) -> Code:
    values: dict[str, object] = {"ais": {}}
    for es in elements:
        ai = es.ai.ai
        values["ais"][ai] = es.value
        if es.gtin_error or es.sscc_error:
            raise CodeError(f"({ai})", es.gtin_error or es.sscc_error)
        if ai == "01":
            values["gtin"] = es.gtin.as_gtin_14()
            values["company_prefix"] = _prefix(es.gtin.company_prefix)
        elif ai == "00":
            values["sscc"] = es.sscc.value
            values["company_prefix"] = _prefix(es.sscc.company_prefix)
        elif ai == "10":
            values["lot"] = es.value
        elif ai == "21":
            values["serial"] = es.value
        elif ai == "17":
            values["expiry"] = es.date
        elif ai == "30":
            values["count"] = int(es.value)
        elif ai.startswith("310"):
            values["net_mg"] = int(es.decimal * 1_000_000)
        elif ai.startswith("315"):
            values["net_ml"] = int(es.decimal * 1000)
        elif ai.startswith("392"):
            values["price"] = es.decimal
        elif ai.startswith("393"):
            values["price"] = es.money.amount if es.money else es.decimal
            values["currency"] = es.value[:3]
    return Code(symbology=sym, **values)


def _urn_escape(text: str) -> str:
    return quote(text, safe=_URN_SAFE)


def _split_gtin(gtin14: str, company_prefix: str | None) -> tuple[str, str] | None:
    if not company_prefix or not gtin14[1:].startswith(company_prefix):
        return None
    return company_prefix, gtin14[0] + gtin14[1 + len(company_prefix):13]


def sgtin_urn(gtin14: str, serial: str, company_prefix: str | None) -> str | None:
    parts = _split_gtin(gtin14, company_prefix)
    return f"urn:epc:id:sgtin:{parts[0]}.{parts[1]}.{_urn_escape(serial)}" if parts else None


def lgtin_urn(gtin14: str, lot: str, company_prefix: str | None) -> str | None:
    parts = _split_gtin(gtin14, company_prefix)
    return f"urn:epc:class:lgtin:{parts[0]}.{parts[1]}.{_urn_escape(lot)}" if parts else None


def sscc_urn(sscc: str, company_prefix: str | None) -> str | None:
    if not company_prefix or not sscc[1:].startswith(company_prefix):
        return None
    return f"urn:epc:id:sscc:{company_prefix}.{sscc[0]}{sscc[1 + len(company_prefix):17]}"


def digital_link(gtin14: str, lot: str | None = None, serial: str | None = None) -> str:
    uri = f"{DIGITAL_LINK_ROOT}/01/{gtin14}"
    if lot is not None:
        uri += "/10/" + quote(lot, safe="")
    if serial is not None:
        uri += "/21/" + quote(serial, safe="")
    return uri


_EPC_CLASS = re.compile(r"^urn:epc:(?:class:lgtin|id:sgtin):(\d+)\.(\d+)\.(.+)$")


def gtin_of_urn(urn: str) -> str:
    """The GTIN-14 inside an SGTIN or LGTIN URN (check digit recomputed)."""
    match = _EPC_CLASS.match(urn)
    if not match:
        raise CodeError("epc", f"not an SGTIN or LGTIN URN: {urn!r}")
    prefix, item = match.group(1), match.group(2)
    if len(prefix) + len(item) != 13:
        raise CodeError("epc", f"company prefix and item reference must have 13 digits: {urn!r}")
    payload = item[0] + prefix + item[1:]
    return payload + str(check_digit(payload))
