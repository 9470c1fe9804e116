"""The hub's OpenAPI 3.1 document: `registry` describes each route, `document` builds it."""
