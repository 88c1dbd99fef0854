import pytest

from k2.hotstore.queries import _tsv_unescape


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("BTC/USDT", "BTC/USDT"),
        ("60004.68", "60004.68"),
        ("a\\tb", "a\tb"),
        ("a\\nb\\\\c", "a\nb\\c"),
        ("it\\'s", "it's"),
    ],
)
def test_tsv_fields_come_back_as_written(field: str, text: str) -> None:
    assert _tsv_unescape(field) == text
