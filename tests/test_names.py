import pytest

from transferlab.data.names import readable_name, wordnet_id


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("n02099601-golden_retriever", "golden retriever"),
        ("n02086240-Shih-Tzu", "Shih-Tzu"),
        ("n02105641-Old_English_sheepdog", "Old English sheepdog"),
        ("border_collie", "border collie"),
        ("cats", "cats"),
    ],
)
def test_readable_name_strips_wordnet_prefix_and_underscores(folder, name):
    assert readable_name(folder) == name


def test_wordnet_id():
    assert wordnet_id("n02099601-golden_retriever") == "n02099601"
    assert wordnet_id("golden_retriever") is None
