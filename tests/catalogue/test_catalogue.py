from netcfg.catalogue import cache as cached_catalogue
from netcfg.catalogue.describe import CACHE, cache_content, json_schema, layers


def test_cached_catalogue_equals_the_models():
    assert CACHE.read_text() == cache_content(), "stale: run `python -m netcfg.catalogue.describe`"


def test_cached_reader_gives_the_live_answers():
    live = {i.name: [a.name for a in i.args] for i in layers()}
    cached = {i.name: [a.name for a in i.args] for i in cached_catalogue.layers()}
    assert cached == live
    assert cached_catalogue.json_schema() == json_schema()
