"""Call statistics as Kamailio's rtpengine module exposes them.

This module owns ``$rtpstat`` (:func:`rtpstat`, the RTP and RTCP totals
as one line) and the ``mos_*`` variables (:func:`mos_stats`: the lowest,
highest and average MOS over the call's SSRCs, optionally only the legs
with one label, as ``mos_A_label_pv`` / ``mos_B_label_pv`` select them).
The arithmetic is Kamailio's: C integer division, the same sentinels, the
same text formats. It reads reply models and never touches the network.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from ._errors import UnexpectedReply
from ._replies import CallStatsReply, MosEntry, PacketStats

__all__ = ["MosStats", "MosValues", "mos_stats", "rtpstat"]

# Kamailio keeps at most this many SSRCs of a labelled leg (ssrcs[4]).
_MAX_LABEL_SSRCS: Final = 4
_STRTOLL: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LLONG_MAX: Final = 2**63 - 1


def _cdiv(a: int, b: int) -> int:
    """C's integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _strtoll(text: str) -> int:
    match = _STRTOLL.match(text)
    if match is None:
        return 0
    return max(-_LLONG_MAX - 1, min(_LLONG_MAX, int(match.group(1))))


def rtpstat(reply: CallStatsReply) -> str:
    """Kamailio's ``$rtpstat`` (``$rtpestat``) from a query reply.

    >>> from sipcore_media import parse_reply
    >>> r = parse_reply("query", {"result": "ok", "totals": {
    ...     "RTP": {"bytes": 54846, "packets": 1447, "errors": 0},
    ...     "RTCP": {"bytes": 336, "packets": 3, "errors": 0}}})
    >>> rtpstat(r)
    'RTP: 54846 bytes, 1447 packets, 0 errors; RTCP: 336 bytes, 3 packets, 0 errors'
    """
    totals = reply.totals
    if totals is None or totals.rtp is None or totals.rtcp is None:
        raise UnexpectedReply("the reply has no RTP and RTCP totals")
    rtp: PacketStats = totals.rtp
    rtcp: PacketStats = totals.rtcp
    return (
        f"RTP: {rtp.bytes} bytes, {rtp.packets} packets, {rtp.errors} errors; "
        f"RTCP: {rtcp.bytes} bytes, {rtcp.packets} packets, {rtcp.errors} errors"
    )


@attrs.frozen
class MosValues:
    """One of the three MOS figures: the lowest, highest or average sample.

    ``mos_tenths`` is rtpengine's integer MOS (43 means 4.3); ``at`` the
    seconds from the call's creation to the sample (None for the average,
    which Kamailio does not time); ``packet_loss`` percent, ``jitter`` ms,
    ``round_trip`` and ``round_trip_leg`` µs, ``samples`` the sample count.
    For the average each value is the C-truncated mean over the SSRCs.
    """

    mos_tenths: int
    at: int | None
    packet_loss: int
    jitter: int
    round_trip: int
    round_trip_leg: int
    samples: int

    @property
    def mos(self) -> float:
        return self.mos_tenths / 10

    def kamailio_text(self) -> dict[str, str]:
        """The values as Kamailio writes them into its variables: ``mos``
        as ``"4.3"``, ``at`` as ``"m:ss"``, the rest as integers."""
        n = self.mos_tenths
        values = {"mos": f"{_cdiv(n, 10)}.{abs(_cmod(n, 10))}"}
        if self.at is not None:
            values["at"] = f"{_cdiv(self.at, 60)}:{abs(_cmod(self.at, 60)):02d}"
        values.update(
            packetloss=str(self.packet_loss),
            jitter=str(self.jitter),
            roundtrip=str(self.round_trip),
            roundtrip_leg=str(self.round_trip_leg),
            samples=str(self.samples),
        )
        return values


# Which of a figure's values has a Kamailio parameter: min and max have no
# samples variable, the average has no "at".
_PARAMETERS: Final = {
    "min": ("mos", "at", "packetloss", "jitter", "roundtrip", "roundtrip_leg"),
    "max": ("mos", "at", "packetloss", "jitter", "roundtrip", "roundtrip_leg"),
    "average": ("mos", "packetloss", "jitter", "roundtrip", "roundtrip_leg", "samples"),
}


@attrs.frozen
class MosStats:
    """Kamailio's MOS figures of a call (or of one labelled side): each is
    None when no SSRC had a usable sample, as Kamailio then leaves the
    variables unset."""

    min: MosValues | None
    max: MosValues | None
    average: MosValues | None

    def kamailio_variables(self, side: str = "") -> dict[str, str]:
        """The values by Kamailio module parameter name: ``mos_min_pv``,
        ``mos_max_at_pv``, ``mos_average_samples_pv``...; with ``side="A"``
        or ``"B"`` the ``_A_pv`` / ``_B_pv`` names."""
        suffix = f"_{side}_pv" if side else "_pv"
        out: dict[str, str] = {}
        for figure, values in (("min", self.min), ("max", self.max), ("average", self.average)):
            if values is None:
                continue
            written = values.kamailio_text()
            for name in _PARAMETERS[figure]:
                param = f"mos_{figure}{suffix}" if name == "mos" else f"mos_{figure}_{name}{suffix}"
                out[param] = written[name]
        return out


def _label_ssrcs(reply: CallStatsReply, label: str) -> list[int]:
    ssrcs: list[int] = []
    for tag in reply.tags.values():
        if tag.label is None or tag.label != label:
            continue
        for media in tag.medias:
            if not media.streams:
                continue
            stream = media.streams[0]  # the RTP stream; RTCP comes second
            ssrc = stream.ssrc if stream.ssrc is not None else -1
            if ssrc == -1:
                if not stream.ingress_ssrcs or stream.ingress_ssrcs[0].ssrc is None:
                    continue
                ssrc = stream.ingress_ssrcs[0].ssrc
                if ssrc == -1:
                    continue
            ssrcs.append(ssrc)
            if len(ssrcs) >= _MAX_LABEL_SSRCS:
                return ssrcs
    return ssrcs


def _values(entry: MosEntry, created: int) -> MosValues:
    return MosValues(
        mos_tenths=entry.mos,
        at=entry.reported_at - created,
        packet_loss=entry.packet_loss,
        jitter=entry.jitter,
        round_trip=entry.round_trip_time,
        round_trip_leg=entry.round_trip_time_leg,
        samples=entry.samples,
    )


def mos_stats(reply: CallStatsReply, label: str | None = None) -> MosStats:
    """Kamailio's ``parse_call_stats`` over a query or delete reply.

    Every SSRC (or, with ``label``, the first-stream SSRCs of at most four
    medias of the parties so labelled) adds its ``average MOS`` to the
    average if its MOS is positive; the ``highest MOS`` above all others is
    the maximum; the lowest positive ``lowest MOS`` the minimum.
    """
    wanted: list[int] | None = None
    if label is not None:
        wanted = _label_ssrcs(reply, label)
        if not wanted:
            return MosStats(None, None, None)
    created = reply.created or 0
    lowest: MosEntry | None = None
    highest: MosEntry | None = None
    sums = [0, 0, 0, 0, 0, 0]  # mos, packet loss, jitter, rtt, rtt leg, samples
    count = 0
    for key, stats in reply.ssrc.items():
        if wanted is not None and _strtoll(key) not in wanted:
            continue
        average = stats.average_mos
        if average is not None and average.mos > 0:
            count += 1
            for i, value in enumerate(
                (
                    average.mos,
                    average.packet_loss,
                    average.jitter,
                    average.round_trip_time,
                    average.round_trip_time_leg,
                    average.samples,
                )
            ):
                sums[i] += value
        top = stats.highest_mos
        if top is not None and top.mos > (highest.mos if highest is not None else -1):
            highest = top
        bottom = stats.lowest_mos
        if (
            bottom is not None
            and bottom.mos > 0
            and bottom.mos < (lowest.mos if lowest is not None else 100)
        ):
            lowest = bottom
    mean = None
    if count:
        mos, loss, jitter, rtt, rtt_leg, samples = (_cdiv(s, count) for s in sums)
        mean = MosValues(mos, None, loss, jitter, rtt, rtt_leg, samples)
    return MosStats(
        min=_values(lowest, created) if lowest is not None else None,
        max=_values(highest, created) if highest is not None else None,
        average=mean,
    )
