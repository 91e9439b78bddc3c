"""hprose TCP framing without sockets: bytes in, frames out, however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hprose_cluster.transport import framing

frames = st.lists(st.tuples(st.binary(max_size=300),
                            st.one_of(st.none(), st.integers(0, 0xFFFFFFFF))), max_size=8)


# no deadline (hypothesis's default is 200 ms an example): on a loaded machine one example
# can be descheduled that long, and hypothesis then fails the run (DeadlineExceeded, or Flaky
# when the re-run is fast) although every frame came back; as the other property tests do
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_any_cut_of_the_stream_gives_back_the_same_frames(items, cuts) -> None:  # type: ignore[no-untyped-def]
    stream = b"".join(framing.encode(body, rid) for body, rid in items)
    decoder = framing.FrameDecoder(1000)
    out = []
    position, n = 0, 0
    while position < len(stream):
        size = cuts[n % len(cuts)]
        decoder.feed(stream[position:position + size])
        position += size
        n += 1
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    assert [(f.body, f.request_id) for f in out] == items
    assert decoder.buffered == 0
    with pytest.raises(framing.ConnectionClosed) as closed:
        decoder.closed()
    assert closed.value.clean


def test_an_oversized_header_is_refused_before_the_body_arrives() -> None:
    decoder = framing.FrameDecoder(max_frame=10)
    decoder.feed(framing.encode_half(b"x" * 11)[:4])
    with pytest.raises(framing.OversizedFrame) as caught:
        decoder.next_frame()
    assert caught.value.length == 11


def test_a_stream_cut_inside_a_frame_is_an_unclean_close() -> None:
    decoder = framing.FrameDecoder()
    decoder.feed(framing.encode_full(b"hello", 7)[:10])
    assert decoder.next_frame() is None
    assert decoder.wanted() == 3
    with pytest.raises(framing.ConnectionClosed) as closed:
        decoder.closed()
    assert not closed.value.clean and "10 of 13" in str(closed.value)
