from chalicelib.domain.schema import SCHEMA_DIR, render, schemas


def test_published_schemas_match_the_model():
    for name, schema in schemas().items():
        published = (SCHEMA_DIR / name).read_text()
        assert published == render(schema), f"docs/schemas/{name} is stale: run python -m chalicelib.domain.schema"
