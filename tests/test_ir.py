"""The IR's own contracts: what crosses to worker processes comes back the same."""

from __future__ import annotations

import dataclasses
import pickle

from hypothesis import given
from hypothesis import strategies as st

from segconvert.model.ir import SegmentInfo

_META = st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5),
                                                       st.lists(st.floats(allow_nan=False), max_size=4)),
                        max_size=3)


@given(
    st.builds(
        SegmentInfo,
        id=st.integers(1, (1 << 24) - 1),
        label=st.text(max_size=8),
        category_id=st.none() | st.integers(-5, 10**6),
        isthing=st.booleans(),
        iscrowd=st.booleans(),
        metadata=_META,
        pixel_ids=st.none() | st.lists(st.integers(1, 1 << 24), max_size=4).map(tuple),
    )
)
def test_segment_info_pickles_every_field(info):
    back = pickle.loads(pickle.dumps(info, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == info
    # a field added to SegmentInfo but not to its __reduce__ would be lost here
    assert len(info.__reduce__()[1]) == len(dataclasses.fields(SegmentInfo))
