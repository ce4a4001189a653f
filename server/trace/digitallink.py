"""EPC URIs and GS1 Digital Link URIs → the constrained canonical Digital Link URI.

Invariant: `canonical(uri)` returns `https://id.gs1.org/{AI}/{key}[/{AI}/{qualifier}]` for
an EPC pure-identity, class or pattern URI (EPC Tag Data Standard 2.x, the EPC ↔ GS1
element string mapping) or any Digital Link URI, keeping only the most fine-grained
qualifier and no query string, as the CBV 2.0 event hash asks (CBV §8.9, rules 17 and
18; GS1 Digital Link URI syntax 1.2 §4.11); anything else gives None and is hashed as
written. Check digits are computed, never taken from the input.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from .gs1 import check_digit

ROOT = "https://id.gs1.org"
# primary key AI → the qualifiers kept, most fine-grained first (CBV 2.0 rule 18)
PRIMARY = {"00": (), "01": ("21", "235", "10"), "253": (), "255": (), "401": (),
           "402": (), "414": ("254",), "417": (), "8003": (), "8004": (),
           "8006": ("21", "10"), "8010": ("8011",), "8017": (), "8018": ()}
QUALIFIERS = {"01": ("22", "10", "21", "235"), "414": ("254", "7040"),
              "8006": ("22", "10", "21"), "8010": ("8011",)}
_SAFE = "-._~!$'()*+,;=:@"  # RFC 3986 pchar: kept as is inside a path segment


def _seg(text: str) -> str:
    return quote(unquote(text), safe=_SAFE)


def _with_check(digits: str) -> str:
    return digits + str(check_digit(digits))


def _gtin(prefix: str, item: str) -> str:
    return _with_check(item[:1] + prefix + item[1:])


def _dl(*pairs: tuple[str, str]) -> str:
    return ROOT + "".join(f"/{ai}/{_seg(value)}" for ai, value in pairs)


def _epc(scheme: str, f: list[str]) -> str | None:
    """One EPC scheme's fields (split on '.') → Digital Link, or None if unknown."""
    n = len(f)
    if scheme in ("sgtin", "lgtin") and n == 3:
        return _dl(("01", _gtin(f[0], f[1])), ("21" if scheme == "sgtin" else "10", f[2]))
    if scheme == "upui" and n == 3:
        return _dl(("01", _gtin(f[0], f[1])), ("235", f[2]))
    if scheme == "sscc" and n == 2:
        return _dl(("00", _with_check(f[1][:1] + f[0] + f[1][1:])))
    if scheme == "sgln" and n == 3:
        gln = _with_check(f[0] + f[1])
        return _dl(("414", gln)) if f[2] == "0" else _dl(("414", gln), ("254", f[2]))
    if scheme == "pgln" and n == 2:
        return _dl(("417", _with_check(f[0] + f[1])))
    if scheme == "grai" and n == 3:
        return _dl(("8003", "0" + _with_check(f[0] + f[1]) + unquote(f[2])))
    if scheme == "giai" and n == 2:
        return _dl(("8004", f[0] + unquote(f[1])))
    if scheme in ("gsrn", "gsrnp") and n == 2:
        return _dl(("8018" if scheme == "gsrn" else "8017", _with_check(f[0] + f[1])))
    if scheme in ("gdti", "sgcn") and n == 3:
        ai = "253" if scheme == "gdti" else "255"
        return _dl((ai, _with_check(f[0] + f[1]) + unquote(f[2])))
    if scheme == "cpi" and n == 3:
        return _dl(("8010", f[0] + unquote(f[1])), ("8011", f[2]))
    if scheme == "ginc" and n == 2:
        return _dl(("401", f[0] + unquote(f[1])))
    if scheme == "gsin" and n == 2:
        return _dl(("402", _with_check(f[0] + f[1])))
    if scheme == "itip" and n == 5:
        return _dl(("8006", _gtin(f[0], f[1]) + f[2] + f[3]), ("21", f[4]))
    return None


def from_epc(uri: str) -> str | None:
    """urn:epc:id:…, urn:epc:class:lgtin:…, urn:epc:idpat:sgtin:CP.IR.* → Digital Link."""
    for head in ("urn:epc:id:", "urn:epc:class:", "urn:epc:idpat:"):
        if uri.startswith(head):
            scheme, _, body = uri[len(head):].partition(":")
            fields = body.split(".")
            if head == "urn:epc:idpat:":  # a pattern names the class: its GTIN only
                if scheme != "sgtin" or len(fields) != 3 or fields[2] != "*":
                    return None
                return _dl(("01", _gtin(fields[0], fields[1])))
            try:
                return _epc(scheme, fields)
            except (ValueError, IndexError):  # a digit field that is not digits
                return None
    return None


def constrain(uri: str) -> str | None:
    """Any Digital Link URI (any domain, any path prefix) → id.gs1.org, its primary key
    and only the most fine-grained qualifier, no query string; None if not one."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    for start, ai in enumerate(segments):
        if ai in PRIMARY and len(segments) - start >= 2 and (len(segments) - start) % 2 == 0:
            pairs = dict(zip(segments[start::2], segments[start + 1::2], strict=True))
            if set(pairs) - {ai} - set(QUALIFIERS.get(ai, ())):
                return None  # not a Digital Link path after all
            key = pairs[ai].zfill(14) if ai in ("01", "8006") and len(pairs[ai]) < 14 \
                else pairs[ai]
            for qualifier in PRIMARY[ai]:
                if qualifier in pairs:
                    return _dl((ai, key), (qualifier, pairs[qualifier]))
            return _dl((ai, key))
    return None


def canonical(uri: str) -> str | None:
    """The constrained canonical Digital Link URI of an EPC or Digital Link, else None."""
    if uri.startswith("urn:epc:"):
        return from_epc(uri)
    if uri.startswith(("http://", "https://")):
        return constrain(uri)
    return None
