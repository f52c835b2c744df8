"""Record: NamedTuple's class syntax built by collections.namedtuple (netserver/records.py)."""

import pickle

import pytest

from netserver.options import Option
from netserver.records import Record


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    label: str = ""

    def moved(self, by: int) -> "Point":
        return self._replace(x=self.x + by)

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


def test_a_record_is_a_named_tuple_with_its_defaults_methods_and_doc():
    point = Point(3)
    assert point == (3, 0, "") and isinstance(point, tuple)
    assert Point._fields == ("x", "y", "label") and Point._field_defaults == {"y": 0, "label": ""}
    assert point.moved(2) == Point(5) and type(point.moved(2)) is Point
    assert Point(-1, 2).norm == 3
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a')"
    assert Point.__doc__ == "A point." and Point.__module__ == __name__
    with pytest.raises(AttributeError):
        point.x = 4  # type: ignore[misc]


def test_a_record_pickles_and_takes_no_instance_dict():
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
    assert not hasattr(Point(1), "__dict__")
    option = Option("x", int, 1, "help")
    assert pickle.loads(pickle.dumps(option)) == option and option.multi is False


def test_a_field_without_a_default_after_one_with_a_default_is_refused():
    with pytest.raises(TypeError, match="Bad: a field without a default follows one with a default"):
        class Bad(Record):
            a: int = 0
            b: int
