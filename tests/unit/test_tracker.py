from hypothesis import given
from hypothesis import strategies as st

from k2.ingest.tracker import ContiguousTracker, Holes, SeenTracker, Verdict


def test_contiguous_new_duplicate_gap_and_fill() -> None:
    t = ContiguousTracker()
    assert t.offer(10, 100) == (Verdict.NEW, None)
    assert t.offer(11, 110) == (Verdict.NEW, None)
    assert t.offer(11, 110) == (Verdict.DUPLICATE, None)
    assert t.offer(15, 150) == (Verdict.NEW, (12, 14))
    assert (t.high, t.high_ts) == (15, 150)
    assert t.offer(13, 130) == (Verdict.FILL, None)
    assert t.offer(13, 130) == (Verdict.DUPLICATE, None)
    assert t.holes.ranges() == [(12, 12), (14, 14)]
    assert t.offer(9, 90) == (Verdict.DUPLICATE, None)  # below anything we track: old news


def test_contiguous_resumes_from_a_cursor() -> None:
    t = ContiguousTracker(high=100, high_ts=5)
    assert t.offer(100, 5) == (Verdict.DUPLICATE, None)
    assert t.offer(103, 9) == (Verdict.NEW, (101, 102))


def test_holes_interval_arithmetic() -> None:
    h = Holes()
    h.add(10, 20)
    h.add(30, 30)
    assert 15 in h and 25 not in h and h.count_in(0, 100) == 12
    assert h.discard(15) and not h.discard(15)
    assert h.ranges() == [(10, 14), (16, 20), (30, 30)]
    assert h.count_in(11, 18) == 7


@given(st.lists(st.integers(0, 200), max_size=300))
def test_contiguous_accepts_each_id_once(ids: list[int]) -> None:
    t = ContiguousTracker()
    accepted = [i for i in ids if t.offer(i, i)[0] is not Verdict.DUPLICATE]
    assert len(accepted) == len(set(accepted))
    # Every id between the first and the highest accepted is either accepted or still a hole.
    if accepted:
        first = ids[0]
        missing = set(range(first, max(accepted) + 1)) - set(accepted)
        assert missing == {i for i in range(first, max(accepted) + 1) if i in t.holes}


def test_seen_tracker_dedupes_within_window_and_accepts_late() -> None:
    t = SeenTracker(capacity=3)
    assert t.offer(10, 1)[0] is Verdict.NEW
    assert t.offer(13, 3)[0] is Verdict.NEW
    assert t.offer(12, 2)[0] is Verdict.FILL  # out of order but never seen: keep it
    assert t.offer(13, 3)[0] is Verdict.DUPLICATE
    assert t.offer(20, 4)[0] is Verdict.NEW  # window full: 10 falls out
    assert t.offer(10, 1)[0] is Verdict.DUPLICATE  # at or below the floor: treated as seen
    assert (t.high, t.high_ts) == (20, 4)


def test_seen_tracker_reload_treats_older_ids_as_seen() -> None:
    t = SeenTracker(capacity=100, recent=[50, 51, 53], high_ts=9)
    assert t.high == 53 and t.high_ts == 9
    assert t.offer(49, 0)[0] is Verdict.DUPLICATE  # stored before the restart
    assert t.offer(52, 0)[0] is Verdict.FILL
    assert t.offer(51, 0)[0] is Verdict.DUPLICATE


def test_a_bounded_tracker_with_no_cursor_holds_its_first_id_for_the_feed_to_confirm() -> None:
    for t in (ContiguousTracker(max_jump=1_000), SeenTracker(capacity=8, max_jump=1_000)):
        assert t.offer(10**12, 1) == (Verdict.SUSPECT, None)  # nothing to check it against
        assert t.high is None
        assert t.adopt(10, 1)[0] is Verdict.NEW  # the feed confirmed 10
        assert t.offer(11, 2) == (Verdict.NEW, None)
    assert ContiguousTracker().offer(10**12, 1) == (Verdict.NEW, None)  # unbounded: taken as is
