"""Philips IntelliVue Data Export protocol: the messages inside the RS-232 frames.

The frame layer (BOF/EOF, escaping, FCS) is ``drivers.intellivue_frame``. This module encodes
and decodes the messages a Computer Client and the monitor exchange (docs/devices.md, "Philips
IntelliVue", for the sources of every layout and number here):

- association control: the Association Request (session header ``CN_SPDU`` 0x0D) and its
  Accept (0x0E) / Refuse (0x0C), the Release Request (0x09) and Result (0x0A), the Abort (0x19);
- data export (first byte 0xE1): ``SPpdu`` + ``ROapdus`` + a remote operation (invoke ROIV,
  result RORS, linked result ROLRS, error ROER), carrying the MDS Create Event Report and its
  result, and the (extended) poll request and its result with the polled objects' attributes.

Byte order is big-endian throughout. ``decode_message`` raises ``MessageError`` on anything
malformed; ``MessageDecoder`` (frames in, messages or counted errors out) never raises.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from monitord.drivers import intellivue_frame as ivf

# --- session headers (association control) --------------------------------------------------
CN_SPDU = 0x0D  # connect: association request
AC_SPDU = 0x0E  # accept: association response
RF_SPDU = 0x0C  # refuse
FN_SPDU = 0x09  # finish: release request
DN_SPDU = 0x0A  # disconnect: release response
AB_SPDU = 0x19  # abort
DATA_EXPORT = 0xE1  # first byte of every data export message (session_id 0xE100)
SESSION_ID = 0xE100
P_CONTEXT_ID = 2  # the context id when the association is encoded as below

# --- remote operations -------------------------------------------------------------------
ROIV_APDU, RORS_APDU, ROER_APDU, ROLRS_APDU = 1, 2, 3, 5
CMD_EVENT_REPORT = 0
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_GET = 3
CMD_SET = 4
CMD_CONFIRMED_SET = 5
CMD_CONFIRMED_ACTION = 7
RORLS_FIRST, RORLS_NOT_FIRST_NOT_LAST, RORLS_LAST = 1, 2, 3
# ROER error values
NO_SUCH_OBJECT_CLASS = 0
NO_SUCH_ACTION = 9
PROCESSING_FAILURE = 10

# --- nomenclature ------------------------------------------------------------------------
NOM_PART_OBJ = 1
NOM_PART_SCADA = 2
NOM_MOC_VMO_METRIC_NU = 6
NOM_MOC_VMS_MDS = 33
NOM_MOC_VMO_AL_MON = 54
NOM_NOTI_MDS_CREAT = 3334
NOM_ACT_POLL_MDIB_DATA = 3094
NOM_ACT_POLL_MDIB_DATA_EXT = 61755
NOM_POLL_PROFILE_SUPPORT = 1
NOM_ATTR_POLL_PROFILE_EXT = 0xF001

# attributes
NOM_ATTR_AL_MON_P_AL_LIST = 0x0902
NOM_ATTR_AL_MON_T_AL_LIST = 0x0904
NOM_ATTR_DEV_AL_COND = 0x0916
NOM_ATTR_ID_HANDLE = 0x0921
NOM_ATTR_ID_MODEL = 0x0928
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_SYS_TYPE = 0x0986
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_REL = 0x098F
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_TIME_STAMP_REL = 0x0991
NOM_ATTR_GRP_AL_MON = 0x0801
NOM_ATTR_GRP_METRIC_VAL_OBS = 0x0803
NOM_ATTR_ALL_GROUPS = 0

# physiological identifiers (SCADA partition)
NOM_ECG_CARD_BEAT_RATE = 0x4182
NOM_PLETH_PULS_RATE = 0x4822
NOM_PRESS_BLD_NONINV = 0x4A04
NOM_PRESS_BLD_NONINV_SYS = 0x4A05
NOM_PRESS_BLD_NONINV_DIA = 0x4A06
NOM_PRESS_BLD_NONINV_MEAN = 0x4A07
NOM_TEMP = 0x4B48
NOM_TEMP_ART = 0x4B50
NOM_TEMP_CORE = 0x4B60
NOM_TEMP_ESOPH = 0x4B64
NOM_TEMP_NASOPH = 0x4B6C
NOM_TEMP_SKIN = 0x4B74
NOM_PULS_OXIM_PLETH = 0x4BB4
NOM_PULS_OXIM_SAT_O2 = 0x4BB8
NOM_RESP_RATE = 0x500A
NOM_AWAY_RESP_RATE = 0x5012
NOM_AWAY_CO2_ET = 0x50B0

# units (dimension partition)
NOM_DIM_PERCENT = 0x0220
NOM_DIM_BEAT_PER_MIN = 0x0AA0
NOM_DIM_RESP_PER_MIN = 0x0AE0
NOM_DIM_KILO_PASCAL = 0x0F03
NOM_DIM_MMHG = 0x0F20
NOM_DIM_FAHR = 0x1140
NOM_DIM_DEGC = 0x17A0

# alert codes (events partition)
NOM_EVT_TUBE_OCCL = 250
NOM_EVT_LEAD_DISCONN = 268
NOM_EVT_LEADS_OFF = 274
NOM_EVT_SENSOR_DISCONN = 308
NOM_EVT_TUBE_DISCONN = 326
NOM_EVT_APNEA = 3072
# AlertType
NO_ALERT, LOW_PRI_T_AL, MED_PRI_T_AL, HI_PRI_T_AL = 0, 1, 2, 4
LOW_PRI_P_AL, MED_PRI_P_AL, HI_PRI_P_AL = 256, 512, 1024
GEN_ALMON_INFO = 513
STR_ALMON_INFO = 516

# MeasurementState bits
MS_INVALID = 0x8000
MS_QUESTIONABLE = 0x4000
MS_UNAVAILABLE = 0x2000
MS_CALIBRATION_ONGOING = 0x1000
MS_TEST_DATA = 0x0800
MS_DEMO_DATA = 0x0400
MS_VALIDATED_DATA = 0x0080
MS_EARLY_INDICATION = 0x0040
MS_MSMT_ONGOING = 0x0020
MS_IN_ALARM = 0x0002
MS_AL_INHIBITED = 0x0001

# MDSEUserInfoStd
MDDL_VERSION1 = 0x80000000
NOMEN_VERSION = 0x40000000
SYST_CLIENT = 0x80000000
SYST_SERVER = 0x00800000
COLD_START = 0x20000000
POLL_PROFILE_REV_0 = 0x80000000
P_OPT_DYN_CREATE_OBJECTS = 0x40000000
P_OPT_DYN_DELETE_OBJECTS = 0x20000000
POLL_EXT_PERIOD_NU_1SEC = 0x80000000
POLL_EXT_PERIOD_RTSA = 0x08000000
MAX_MTU_RS232 = 1000  # the largest MTU the MIB/RS232 interface negotiates

# RelativeTime ticks: 1/8 ms
TICKS_PER_S = 8000

# FLOAT-Type special mantissas
FLOAT_NAN = 0x7FFFFF
FLOAT_NRES = 0x800000
FLOAT_POS_INF = 0x7FFFFE
FLOAT_NEG_INF = 0x800002
_FLOAT_SPECIAL = {FLOAT_NAN: "NaN", FLOAT_NRES: "NRes", FLOAT_POS_INF: "+INF", FLOAT_NEG_INF: "-INF"}

# --- association control: the fixed presentation layer ----------------------------------------
# Session data of the connect (and accept) SPDU, and the ASN.1 presentation headers around the
# MDSEUserInfoStd, as the public implementations send them (docs/devices.md, "Philips IntelliVue").
ASSOC_SESSION_DATA = bytes.fromhex("0508130100160102800014020002")
ASSOC_REQ_PRESENTATION = bytes.fromhex(
    "3180a0808001010000a280a0030000 01a4803080020101060452010001308006025101000000003080020102060c"
    "2a8648ce14020100000001013080060c2a8648ce1402010000000201000000000000618030800201 01a080608"
    "0a180060c2a8648ce140201000000030100 00be802880060c2a8648ce140201000000010102010281".replace(" ", "")
)
ASSOC_RESP_PRESENTATION = bytes.fromhex(
    "3180a0808001010000a280a003000001a5803080800100810251010000308080010081 0c2a8648ce14020100000002"
    "0100000000618030800201 01a0806180a180060c2a8648ce1402010000000301 0000a203020100a305a103020100"
    "be80288002010281".replace(" ", "")
)
PRESENTATION_TRAILER = bytes(16)
# Where the user data begins: after one of these (the request's, and the two endings OpenICE
# accepts in a response).
_USER_DATA_MARKERS = (bytes.fromhex("be802880060c2a8648ce140201000000010102010281"),
                      bytes.fromhex("be80288002010281"), bytes.fromhex("be80288081"))
RELEASE_REQ_PRESENTATION = bytes.fromhex("61803080020101a08062808001") + bytes(9)  # RLRQ
RELEASE_RESP_PRESENTATION = bytes.fromhex("61803080020101a08063808001") + bytes(9)  # RLRE (not seen in a capture)
ABORT_PRESENTATION = bytes.fromhex("61803080020101a08064808001") + bytes(9)  # ABRT (not seen in a capture)


class MessageError(ValueError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


# --- primitive types ---------------------------------------------------------------------


def decode_float(raw: int) -> float:
    """FLOAT-Type (8-bit signed exponent, 24-bit signed mantissa) -> float. NaN and NRes (not at
    this resolution) give ``math.nan``, +/-INFINITY ``math.inf``/``-math.inf``."""
    exponent = (raw >> 24) & 0xFF
    mantissa = raw & 0xFFFFFF
    special = _FLOAT_SPECIAL.get(mantissa)
    if special is not None:
        return {"+INF": math.inf, "-INF": -math.inf}.get(special, math.nan)
    if exponent >= 0x80:
        exponent -= 0x100
    if mantissa >= 0x800000:
        mantissa -= 0x1000000
    if exponent < 0:
        return mantissa / 10 ** (-exponent)
    return float(mantissa * 10**exponent)


def float_special(raw: int) -> str | None:
    """"NaN", "NRes", "+INF", "-INF" for the special values, else None."""
    return _FLOAT_SPECIAL.get(raw & 0xFFFFFF)


def encode_float(value: float) -> int:
    """A float -> FLOAT-Type with the fewest decimals (up to 6) that hold it exactly; NaN and
    +/-inf become the special values. Too large for 24 bits: ``ValueError``."""
    if math.isnan(value):
        return FLOAT_NAN
    if math.isinf(value):
        return FLOAT_POS_INF if value > 0 else FLOAT_NEG_INF
    for decimals in range(0, 7):
        scaled = value * 10**decimals
        mantissa = round(scaled)
        if abs(scaled - mantissa) < 1e-6 * max(1.0, abs(scaled)) or decimals == 6:
            exponent = -decimals
            while abs(mantissa) >= 0x7FFFFE and exponent < 127:
                mantissa = round(mantissa / 10)
                exponent += 1
            if not -0x7FFFFD <= mantissa <= 0x7FFFFD:
                raise ValueError(f"{value!r} does not fit a FLOAT-Type")
            return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)
    raise AssertionError("unreachable")  # pragma: no cover


def _bcd(b: int) -> int:
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        raise ValueError(f"{b:#04x} is not BCD")
    return hi * 10 + lo


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def decode_abs_time(raw: bytes) -> datetime | None:
    """AbsoluteTime (century, year, month, day, hour, minute, second, fraction; BCD, monitor
    local time, no zone) -> naive datetime; None if unset or not a date."""
    if len(raw) != 8 or raw[:7] == b"\xff" * 7:
        return None
    try:
        c, y, mo, d, h, mi, s = (_bcd(b) for b in raw[:7])
        return datetime(c * 100 + y, mo, d, h, mi, s)
    except ValueError:
        return None


def encode_abs_time(t: datetime | None) -> bytes:
    if t is None:
        return b"\xff" * 8
    return bytes((_to_bcd(t.year // 100), _to_bcd(t.year % 100), _to_bcd(t.month), _to_bcd(t.day),
                  _to_bcd(t.hour), _to_bcd(t.minute), _to_bcd(t.second), 0))


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise MessageError("short", f"{what}: needs {n} bytes, {self.end - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        b = self.take(2, what)
        return (b[0] << 8) | b[1]

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    def sub(self, n: int, what: str) -> _Reader:
        start = self.pos
        self.take(n, what)
        return _Reader(self.data, start, start + n)

    @property
    def left(self) -> int:
        return self.end - self.pos


# --- attribute lists ---------------------------------------------------------------------

Attributes = dict[int, bytes]  # attribute id -> value (the last one wins if repeated)


def encode_attributes(attrs: list[tuple[int, bytes]] | Attributes) -> bytes:
    items = list(attrs.items()) if isinstance(attrs, dict) else attrs
    body = b"".join(struct.pack(">HH", aid, len(val)) + val for aid, val in items)
    return struct.pack(">HH", len(items), len(body)) + body


def _attributes(r: _Reader, what: str) -> Attributes:
    count = r.u16(what + " count")
    length = r.u16(what + " length")
    lr = r.sub(length, what)
    out: Attributes = {}
    for _ in range(count):
        aid = lr.u16(what + " attribute id")
        alen = lr.u16(what + " attribute length")
        out[aid] = lr.take(alen, f"{what} attribute {aid:#06x}")
    if lr.left:
        raise MessageError("attributes", f"{what}: {lr.left} bytes after {count} attributes")
    return out


# --- values inside attributes --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NuObsValue:
    physio_id: int
    state: int
    unit: int
    raw: int  # the FLOAT-Type as sent

    @property
    def value(self) -> float:
        return decode_float(self.raw)


NU_OBS = struct.Struct(">HHHI")


def encode_nu_obs(physio_id: int, value: float, unit: int, state: int = 0) -> bytes:
    return NU_OBS.pack(physio_id, state, unit, encode_float(value))


def encode_nu_cmpd(values: list[tuple[int, float, int, int]]) -> bytes:
    """(physio_id, value, unit, state) each -> a Compound Numeric Observed Value."""
    body = b"".join(encode_nu_obs(p, v, u, s) for p, v, u, s in values)
    return struct.pack(">HH", len(values), len(body)) + body


def decode_nu_obs(raw: bytes) -> NuObsValue:
    if len(raw) != NU_OBS.size:
        raise MessageError("numeric", f"Numeric Observed Value of {len(raw)} bytes, not {NU_OBS.size}")
    return NuObsValue(*NU_OBS.unpack(raw))


def decode_nu_cmpd(raw: bytes) -> list[NuObsValue]:
    r = _Reader(raw)
    count, length = r.u16("compound count"), r.u16("compound length")
    if length != count * NU_OBS.size or r.left != length:
        raise MessageError("numeric", f"compound of {count} values in {length} bytes ({r.left} sent)")
    return [NuObsValue(*NU_OBS.unpack_from(raw, 4 + i * NU_OBS.size)) for i in range(count)]


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    source: int  # al_source: SCADA physio id (LSB 0) or object class (LSB 1)
    code: int  # al_code (events partition)
    type: int  # AlertType
    state: int  # AlertState
    text: str = ""  # StrAlMonInfo string, if any


def encode_alarm_list(entries: list[AlarmEntry]) -> bytes:
    body = bytearray()
    for e in entries:
        if e.text:
            s = e.text.encode("utf-16-be")
            info = struct.pack(">HIHH", 0, 0, e.type, 0) + struct.pack(">H", len(s)) + s
            info_id = STR_ALMON_INFO
        else:
            info = struct.pack(">HIHH", 0, 0, e.type, 0)
            info_id = GEN_ALMON_INFO
        body += struct.pack(">HHHH", e.source, e.code, e.type, e.state)
        body += struct.pack(">HHH", NOM_MOC_VMO_AL_MON, 0, 0)
        body += struct.pack(">HH", info_id, len(info)) + info
    return struct.pack(">HH", len(entries), len(body)) + bytes(body)


def decode_alarm_list(raw: bytes) -> list[AlarmEntry]:
    r = _Reader(raw)
    count, length = r.u16("alarm count"), r.u16("alarm length")
    lr = r.sub(length, "alarm list")
    if r.left:
        raise MessageError("alarms", f"{r.left} bytes after the alarm list")
    out = []
    for _ in range(count):
        source, code, atype, state = lr.u16("al_source"), lr.u16("al_code"), lr.u16("al_type"), lr.u16("al_state")
        lr.take(6, "alarm object")
        info_id, info_len = lr.u16("alert_info_id"), lr.u16("alert info length")
        info = lr.take(info_len, "alert info")
        text = ""
        if info_id == STR_ALMON_INFO and len(info) >= 12:
            slen = (info[10] << 8) | info[11]
            text = info[12 : 12 + slen].decode("utf-16-be", "replace").rstrip("\x00")
        out.append(AlarmEntry(source, code, atype, state, text))
    if lr.left:
        raise MessageError("alarms", f"{lr.left} bytes after {count} alarms")
    return out


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserInfo:
    """MDSEUserInfoStd, with the Poll Profile Support it carries."""

    protocol_version: int = MDDL_VERSION1
    nomenclature_version: int = NOMEN_VERSION
    functional_units: int = 0
    system_type: int = SYST_CLIENT
    startup_mode: int = COLD_START
    min_poll_period: int = 1 * TICKS_PER_S  # RelativeTime, 1/8 ms
    max_mtu_rx: int = MAX_MTU_RS232
    max_mtu_tx: int = MAX_MTU_RS232
    max_bw_tx: int = 0xFFFFFFFF
    poll_options: int = P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS
    ext_options: int | None = POLL_EXT_PERIOD_NU_1SEC  # Poll Profile Extensions; None: not requested


@dataclass(frozen=True, slots=True)
class AssocRequest:
    user: UserInfo


@dataclass(frozen=True, slots=True)
class AssocResponse:
    user: UserInfo


@dataclass(frozen=True, slots=True)
class AssocRefuse:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class ObjectId:
    """ManagedObjectId: object class and global handle."""

    obj_class: int
    context_id: int = 0
    handle: int = 0


MDS = ObjectId(NOM_MOC_VMS_MDS, 0, 0)


@dataclass(frozen=True, slots=True)
class MdsCreateEvent:
    invoke_id: int
    mds: ObjectId
    event_time: int  # RelativeTime
    attributes: Attributes = field(default_factory=dict)

    @property
    def abs_time(self) -> datetime | None:
        raw = self.attributes.get(NOM_ATTR_TIME_ABS)
        return decode_abs_time(raw) if raw is not None else None


@dataclass(frozen=True, slots=True)
class MdsCreateResult:
    invoke_id: int
    mds: ObjectId


@dataclass(frozen=True, slots=True)
class PollRequest:
    invoke_id: int
    poll_number: int
    obj_code: int  # NOM_MOC_VMO_METRIC_NU, NOM_MOC_VMO_AL_MON...
    attr_group: int = NOM_ATTR_ALL_GROUPS
    extended: bool = True
    obj_partition: int = NOM_PART_OBJ
    ext_attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    context_id: int
    handle: int
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class PollResult:
    invoke_id: int
    poll_number: int
    rel_time: int
    abs_time: datetime | None
    obj_code: int
    attr_group: int
    observations: tuple[Observation, ...]
    sequence_no: int = 0
    extended: bool = True
    linked: tuple[int, int] | None = None  # (RorlsId state, count) of a linked result


@dataclass(frozen=True, slots=True)
class RemoteError:
    invoke_id: int
    error_value: int


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A valid message of a kind this driver does not use (a GET, a SET, another event)."""

    what: str


Message = (AssocRequest | AssocResponse | AssocRefuse | ReleaseRequest | ReleaseResponse | Abort
           | MdsCreateEvent | MdsCreateResult | PollRequest | PollResult | RemoteError | OtherMessage)


# --- association control encoding --------------------------------------------------------


def _li(n: int) -> bytes:
    return bytes((n,)) if n <= 254 else b"\xff" + struct.pack(">H", n)


def _asn_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    return b"\x82" + struct.pack(">H", n)


def encode_user_info(u: UserInfo) -> bytes:
    packages: list[tuple[int, bytes]] = []
    if u.ext_options is not None:
        packages.append((NOM_ATTR_POLL_PROFILE_EXT, struct.pack(">I", u.ext_options) + encode_attributes([])))
    support = struct.pack(">IIIIII", POLL_PROFILE_REV_0, u.min_poll_period, u.max_mtu_rx, u.max_mtu_tx,
                          u.max_bw_tx, u.poll_options) + encode_attributes(packages)
    return (struct.pack(">IIIII", u.protocol_version, u.nomenclature_version, u.functional_units,
                        u.system_type, u.startup_mode)
            + encode_attributes([]) + encode_attributes([(NOM_POLL_PROFILE_SUPPORT, support)]))


def _decode_user_info(r: _Reader) -> UserInfo:
    pv, nv, fu, st, sm = (r.u32("user info") for _ in range(5))
    _attributes(r, "option list")
    profiles = _attributes(r, "supported profiles")
    raw = profiles.get(NOM_POLL_PROFILE_SUPPORT)
    if raw is None:
        raise MessageError("association", "no Poll Profile Support in the association")
    pr = _Reader(raw)
    pr.u32("poll profile revision")
    period, rx, tx, bw, opts = (pr.u32("poll profile") for _ in range(5))
    packages = _attributes(pr, "optional packages")
    ext = packages.get(NOM_ATTR_POLL_PROFILE_EXT)
    ext_options = _Reader(ext).u32("poll profile extension") if ext is not None else None
    return UserInfo(pv, nv, fu, st, sm, period, rx, tx, bw, opts, ext_options)


def _session(spdu: int, session_data: bytes, presentation: bytes) -> bytes:
    pres = b"\xc1" + _li(len(presentation)) + presentation
    body = session_data + pres
    return bytes((spdu,)) + _li(len(body)) + body


def _assoc(spdu: int, header: bytes, user: UserInfo) -> bytes:
    ui = encode_user_info(user)
    return _session(spdu, ASSOC_SESSION_DATA, header + _asn_len(len(ui)) + ui + PRESENTATION_TRAILER)


def encode_assoc_request(user: UserInfo | None = None) -> bytes:
    return _assoc(CN_SPDU, ASSOC_REQ_PRESENTATION, user or UserInfo())


def encode_assoc_response(user: UserInfo) -> bytes:
    return _assoc(AC_SPDU, ASSOC_RESP_PRESENTATION, user)


def encode_refuse() -> bytes:
    return _session(RF_SPDU, b"", b"")


def encode_release_request() -> bytes:
    return _session(FN_SPDU, b"", RELEASE_REQ_PRESENTATION)


def encode_release_response() -> bytes:
    return _session(DN_SPDU, b"", RELEASE_RESP_PRESENTATION)


def encode_abort() -> bytes:
    return _session(AB_SPDU, b"", ABORT_PRESENTATION)


# --- data export encoding ----------------------------------------------------------------


def _export(ro_type: int, ro: bytes) -> bytes:
    return struct.pack(">HHHH", SESSION_ID, P_CONTEXT_ID, ro_type, len(ro)) + ro


def _oid(o: ObjectId) -> bytes:
    return struct.pack(">HHH", o.obj_class, o.context_id, o.handle)


def encode_mds_create_event(invoke_id: int, event_time: int, attributes: list[tuple[int, bytes]],
                            mds: ObjectId = MDS) -> bytes:
    info = _oid(mds) + encode_attributes(attributes)
    arg = _oid(mds) + struct.pack(">IHH", event_time, NOM_NOTI_MDS_CREAT, len(info)) + info
    return _export(ROIV_APDU, struct.pack(">HHH", invoke_id, CMD_CONFIRMED_EVENT_REPORT, len(arg)) + arg)


def encode_mds_create_result(invoke_id: int, mds: ObjectId = MDS, current_time: int = 0) -> bytes:
    res = _oid(mds) + struct.pack(">IHH", current_time, NOM_NOTI_MDS_CREAT, 0)
    return _export(RORS_APDU, struct.pack(">HHH", invoke_id, CMD_CONFIRMED_EVENT_REPORT, len(res)) + res)


def encode_poll_request(invoke_id: int, poll_number: int, obj_code: int,
                        attr_group: int = NOM_ATTR_ALL_GROUPS, *, extended: bool = True,
                        ext_attributes: list[tuple[int, bytes]] | None = None) -> bytes:
    req = struct.pack(">HHHH", poll_number, NOM_PART_OBJ, obj_code, attr_group)
    if extended:
        req += encode_attributes(ext_attributes or [])
    action = NOM_ACT_POLL_MDIB_DATA_EXT if extended else NOM_ACT_POLL_MDIB_DATA
    arg = _oid(MDS) + struct.pack(">IHH", 0, action, len(req)) + req
    return _export(ROIV_APDU, struct.pack(">HHH", invoke_id, CMD_CONFIRMED_ACTION, len(arg)) + arg)


def encode_observations(observations: list[Observation] | tuple[Observation, ...]) -> bytes:
    by_context: dict[int, list[Observation]] = {}
    for o in observations:
        by_context.setdefault(o.context_id, []).append(o)
    contexts = bytearray()
    for ctx, obs in by_context.items():
        body = b"".join(struct.pack(">H", o.handle) + encode_attributes(o.attributes) for o in obs)
        contexts += struct.pack(">HHH", ctx, len(obs), len(body)) + body
    return struct.pack(">HH", len(by_context), len(contexts)) + bytes(contexts)


def encode_poll_result(invoke_id: int, poll_number: int, obj_code: int, observations: list[Observation],
                       *, rel_time: int = 0, abs_time: datetime | None = None, sequence_no: int = 0,
                       attr_group: int = NOM_ATTR_ALL_GROUPS, extended: bool = True,
                       linked: tuple[int, int] | None = None) -> bytes:
    head = struct.pack(">HH", poll_number, sequence_no) if extended else struct.pack(">H", poll_number)
    reply = (head + struct.pack(">I", rel_time) + encode_abs_time(abs_time)
             + struct.pack(">HHH", NOM_PART_OBJ, obj_code, attr_group) + encode_observations(observations))
    action = NOM_ACT_POLL_MDIB_DATA_EXT if extended else NOM_ACT_POLL_MDIB_DATA
    res = _oid(MDS) + struct.pack(">HH", action, len(reply)) + reply
    ro = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_ACTION, len(res)) + res
    if linked is None:
        return _export(RORS_APDU, ro)
    return _export(ROLRS_APDU, struct.pack(">BB", *linked) + ro)


def encode_error(invoke_id: int, error_value: int) -> bytes:
    return _export(ROER_APDU, struct.pack(">HHH", invoke_id, error_value, 0))


# --- decoding ----------------------------------------------------------------------------


def decode_message(data: bytes) -> Message:
    """One frame's user data -> a message; raises ``MessageError``."""
    if not data:
        raise MessageError("short", "empty message")
    first = data[0]
    if first == DATA_EXPORT:
        return _decode_export(data)
    if first in (CN_SPDU, AC_SPDU, RF_SPDU, FN_SPDU, DN_SPDU, AB_SPDU):
        return _decode_session(data)
    raise MessageError("unknown", f"message starts with {first:#04x}")


def _decode_session(data: bytes) -> Message:
    r = _Reader(data)
    spdu = r.u8("session type")
    n = r.u8("session length")
    if n == 0xFF:
        n = r.u16("session length")
    if n != r.left:
        raise MessageError("length", f"session header says {n} bytes, {r.left} follow")
    if spdu in (CN_SPDU, AC_SPDU):
        body = data[r.pos :]
        for marker in _USER_DATA_MARKERS:
            at = body.find(marker)
            if at >= 0:
                break
        else:
            raise MessageError("association", "no user data in the association message")
        ur = _Reader(body, at + len(marker))
        n = ur.u8("user data length")
        if n & 0x80:
            n = int.from_bytes(ur.take(n & 0x7F, "user data length"), "big")
        user = _decode_user_info(ur.sub(n, "user data"))
        return AssocRequest(user) if spdu == CN_SPDU else AssocResponse(user)
    if spdu == RF_SPDU:
        return AssocRefuse()
    if spdu == FN_SPDU:
        return ReleaseRequest()
    if spdu == DN_SPDU:
        return ReleaseResponse()
    return Abort()


def _decode_export(data: bytes) -> Message:
    r = _Reader(data)
    session, _ctx = r.u16("session id"), r.u16("context id")
    if session != SESSION_ID:
        raise MessageError("unknown", f"session id {session:#06x}")
    ro_type, length = r.u16("ro_type"), r.u16("ROapdus length")
    if length != r.left:
        raise MessageError("length", f"ROapdus says {length} bytes, {r.left} follow")
    linked = None
    if ro_type == ROLRS_APDU:
        linked = (r.u8("linked state"), r.u8("linked count"))
    elif ro_type == ROER_APDU:
        invoke_id, error_value = r.u16("invoke id"), r.u16("error value")
        r.take(r.u16("error length"), "error")
        return RemoteError(invoke_id, error_value)
    elif ro_type not in (ROIV_APDU, RORS_APDU):
        raise MessageError("unknown", f"remote operation type {ro_type}")
    invoke_id, command, clen = r.u16("invoke id"), r.u16("command type"), r.u16("command length")
    if clen != r.left:
        raise MessageError("length", f"command says {clen} bytes, {r.left} follow")
    if ro_type == ROIV_APDU:
        return _decode_invoke(r, invoke_id, command)
    return _decode_result(r, invoke_id, command, linked)


def _oid_of(r: _Reader) -> ObjectId:
    return ObjectId(r.u16("object class"), r.u16("context id"), r.u16("handle"))


def _decode_invoke(r: _Reader, invoke_id: int, command: int) -> Message:
    if command in (CMD_EVENT_REPORT, CMD_CONFIRMED_EVENT_REPORT):
        obj = _oid_of(r)
        event_time, event_type, n = r.u32("event time"), r.u16("event type"), r.u16("event length")
        er = r.sub(n, "event")
        if event_type != NOM_NOTI_MDS_CREAT:
            return OtherMessage(f"event report {event_type}")
        mds = _oid_of(er)
        attrs = _attributes(er, "MDS create")
        return MdsCreateEvent(invoke_id, mds if mds.obj_class else obj, event_time, attrs)
    if command == CMD_CONFIRMED_ACTION:
        _oid_of(r)
        _scope, action, n = r.u32("scope"), r.u16("action type"), r.u16("action length")
        ar = r.sub(n, "action")
        if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
            return OtherMessage(f"action {action}")
        poll_number, part, code, grp = ar.u16("poll number"), ar.u16("partition"), ar.u16("code"), ar.u16("group")
        extended = action == NOM_ACT_POLL_MDIB_DATA_EXT
        ext = _attributes(ar, "poll attributes") if extended and ar.left else {}
        return PollRequest(invoke_id, poll_number, code, grp, extended, part, ext)
    return OtherMessage(f"invoke of command {command}")


def _decode_result(r: _Reader, invoke_id: int, command: int, linked: tuple[int, int] | None) -> Message:
    if command in (CMD_EVENT_REPORT, CMD_CONFIRMED_EVENT_REPORT):
        obj = _oid_of(r)
        _time, event_type = r.u32("current time"), r.u16("event type")
        r.take(r.u16("event length"), "event result")
        if event_type == NOM_NOTI_MDS_CREAT:
            return MdsCreateResult(invoke_id, obj)
        return OtherMessage(f"event result {event_type}")
    if command != CMD_CONFIRMED_ACTION:
        return OtherMessage(f"result of command {command}")
    _oid_of(r)
    action, n = r.u16("action type"), r.u16("action length")
    ar = r.sub(n, "action result")
    if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
        return OtherMessage(f"action result {action}")
    extended = action == NOM_ACT_POLL_MDIB_DATA_EXT
    poll_number = ar.u16("poll number")
    seq = ar.u16("sequence number") if extended else 0
    rel_time = ar.u32("relative time")
    abs_time = decode_abs_time(ar.take(8, "absolute time"))
    _part, code, grp = ar.u16("partition"), ar.u16("object code"), ar.u16("attribute group")
    count, length = ar.u16("poll info count"), ar.u16("poll info length")
    lr = ar.sub(length, "poll info")
    observations: list[Observation] = []
    for _ in range(count):
        ctx, n_obs, obs_len = lr.u16("context id"), lr.u16("observation count"), lr.u16("observation length")
        orr = lr.sub(obs_len, "observations")
        for _ in range(n_obs):
            handle = orr.u16("handle")
            observations.append(Observation(ctx, handle, _attributes(orr, f"object {handle}")))
        if orr.left:
            raise MessageError("attributes", f"{orr.left} bytes after the observations of context {ctx}")
    if lr.left or ar.left:
        raise MessageError("attributes", f"{lr.left + ar.left} bytes after the poll info list")
    return PollResult(invoke_id, poll_number, rel_time, abs_time, code, grp, tuple(observations), seq,
                      extended, linked)


# --- the stream ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageFault:
    kind: str
    detail: str


@dataclass
class MessageDecoder:
    """Bytes in, messages or counted errors out (frame errors and message errors). Total."""

    frames: ivf.FrameDecoder = field(default_factory=ivf.FrameDecoder)
    messages: int = 0
    message_errors: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> Counter[str]:
        return self.frames.errors + self.message_errors

    @property
    def error_count(self) -> int:
        return self.frames.error_count + sum(self.message_errors.values())

    def reset(self) -> None:
        self.frames.reset()

    def feed(self, chunk: bytes) -> list[Message | ivf.FrameError | MessageFault]:
        out: list[Message | ivf.FrameError | MessageFault] = []
        for item in self.frames.feed(chunk):
            if isinstance(item, ivf.FrameError):
                out.append(item)
                continue
            try:
                out.append(decode_message(item.data))
                self.messages += 1
            except MessageError as exc:
                self.message_errors[exc.kind] += 1
                out.append(MessageFault(exc.kind, str(exc)))
            except (ValueError, KeyError, IndexError, struct.error, UnicodeError) as exc:  # never escapes
                self.message_errors["malformed"] += 1
                out.append(MessageFault("malformed", f"{type(exc).__name__}: {exc}"))
        return out


def frame(message: bytes) -> bytes:
    """A message framed for the line."""
    return ivf.encode_frame(message)
