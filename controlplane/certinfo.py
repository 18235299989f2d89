"""What a process that only *holds* a certificate needs from it — whose it is and when it expires — read
from the DER without the ``cryptography`` package.

Node agents load their certificate at every start and look at it again to schedule its renewal; loading
``cryptography`` for that would cost each agent about 9 MiB of resident memory for the life of the process
(OpenSSL's bindings), although it is needed only to make a key and a CSR when joining or renewing
(``controlplane.pki``). This module reads exactly the fields it names from the certificate's
``TBSCertificate`` (subject CN and O, validity) and rejects anything else as malformed:

- every length is checked against what is left of its enclosing element (no read past the end, no
  recursion: the walk is a fixed sequence of steps), and a PEM block over ``MAX_PEM`` bytes is refused;
- errors are ``CertificateError`` (``ValueError``), naming what was wrong.

The identity names and the lifetime arithmetic live here too, so ``controlplane.pki`` and this reader agree.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass

CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates are valid from a little before they are made, so hosts with slightly slow clocks accept them."""

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
APISERVER_USER = "system:apiserver"
"""The API server's identity towards agents (their endpoint answers only this user)."""

MAX_PEM = 64 * 1024
_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_CN, _O = bytes([0x55, 0x04, 0x03]), bytes([0x55, 0x04, 0x0A])  # 2.5.4.3, 2.5.4.10
_STRING_TAGS = {0x0C, 0x13, 0x14, 0x16, 0x1E}  # UTF8String, PrintableString, T61String, IA5String, BMPString


class CertificateError(ValueError):
    """Data that is not a certificate this module can read."""


@dataclass(frozen=True)
class CertInfo:
    """A certificate's subject and validity."""

    user: str
    """The subject's common name."""
    groups: tuple[str, ...]
    """The subject's organisations."""
    not_before: datetime.datetime
    not_after: datetime.datetime

    def lifetime(self) -> float:
        """Seconds from when the certificate was made to when it expires."""
        return lifetime(self.not_before, self.not_after)

    def remaining_fraction(self, now: datetime.datetime | None = None) -> float:
        """How much of the lifetime is left (1.0 new, 0.0 expired)."""
        return remaining_fraction(self.not_before, self.not_after, now)


def lifetime(not_before: datetime.datetime, not_after: datetime.datetime) -> float:
    """Seconds from when a certificate was made (``not_before`` is back-dated by ``CLOCK_SKEW``) to expiry."""
    issued = min(not_before + CLOCK_SKEW, not_after)
    return (not_after - issued).total_seconds()


def remaining_fraction(
    not_before: datetime.datetime, not_after: datetime.datetime, now: datetime.datetime | None = None
) -> float:
    """How much of a certificate's lifetime is left (1.0 new, 0.0 expired); the lifetime starts when it was
    made, not at the back-dated notBefore."""
    now = now or datetime.datetime.now(datetime.UTC)
    total = lifetime(not_before, not_after)
    left = (not_after - now).total_seconds()
    return max(0.0, min(1.0, left / total)) if total > 0 else 0.0


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the element at ``pos``, within ``end``."""
    if pos + 2 > end:
        raise CertificateError("truncated element")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise CertificateError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise CertificateError("element longer than what holds it")
    return tag, pos, pos + length


def _time(data: bytes, tag: int, start: int, end: int) -> datetime.datetime:
    text = data[start:end].decode("ascii", errors="replace")
    try:
        if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049
            parsed = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
            if parsed.year >= 2050:
                parsed = parsed.replace(year=parsed.year - 100)
        elif tag == 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
            parsed = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise CertificateError(f"validity time with tag {tag:#x}")
    except ValueError as err:
        raise CertificateError(f"bad validity time {text!r}") from err
    return parsed.replace(tzinfo=datetime.UTC)


def _name(data: bytes, start: int, end: int) -> tuple[str, tuple[str, ...]]:
    """(CN, O values) of a Name (SEQUENCE OF SET OF SEQUENCE {OID, value})."""
    cn, orgs = "", []
    pos = start
    while pos < end:
        tag, set_start, set_end = _tlv(data, pos, end)
        if tag != 0x31:
            raise CertificateError("bad name")
        inner = set_start
        while inner < set_end:
            tag, attr_start, attr_end = _tlv(data, inner, set_end)
            oid_tag, oid_start, oid_end = _tlv(data, attr_start, attr_end)
            value_tag, value_start, value_end = _tlv(data, oid_end, attr_end)
            if tag != 0x30 or oid_tag != 0x06:
                raise CertificateError("bad name attribute")
            oid = data[oid_start:oid_end]
            if oid in (_CN, _O) and value_tag in _STRING_TAGS:
                raw = data[value_start:value_end]
                text = raw.decode("utf-16-be" if value_tag == 0x1E else "utf-8", errors="replace")
                if oid == _CN and not cn:
                    cn = text
                elif oid == _O:
                    orgs.append(text)
            inner = attr_end
        pos = set_end
    return cn, tuple(orgs)


def read_der(der: bytes) -> CertInfo:
    """The subject and validity of a DER certificate."""
    tag, cert_start, cert_end = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise CertificateError("not a certificate")
    tag, pos, tbs_end = _tlv(der, cert_start, cert_end)
    if tag != 0x30:
        raise CertificateError("no TBSCertificate")
    tag, _, after = _tlv(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version
        pos = after
    for expected in (0x02, 0x30, 0x30):  # serialNumber, signature algorithm, issuer
        tag, _, after = _tlv(der, pos, tbs_end)
        if tag != expected:
            raise CertificateError("unexpected field before the validity")
        pos = after
    tag, validity_start, validity_end = _tlv(der, pos, tbs_end)
    if tag != 0x30:
        raise CertificateError("no validity")
    t1, s1, e1 = _tlv(der, validity_start, validity_end)
    t2, s2, e2 = _tlv(der, e1, validity_end)
    tag, subject_start, subject_end = _tlv(der, validity_end, tbs_end)
    if tag != 0x30:
        raise CertificateError("no subject")
    user, groups = _name(der, subject_start, subject_end)
    return CertInfo(user, groups, _time(der, t1, s1, e1), _time(der, t2, s2, e2))


def read_pem(data: bytes) -> CertInfo:
    """The subject and validity of the first certificate of a PEM bundle."""
    begin = data.find(_BEGIN)
    end = data.find(_END, begin + 1)
    if begin < 0 or end < 0:
        raise CertificateError("no PEM certificate")
    if end - begin > MAX_PEM:
        raise CertificateError(f"PEM certificate longer than {MAX_PEM} bytes")
    try:
        der = base64.b64decode(b"".join(data[begin + len(_BEGIN) : end].split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise CertificateError(f"bad PEM: {err}") from None
    return read_der(der)
