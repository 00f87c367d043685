"""Type hints for JSON schemas (draft-07 keywords), for editors and mypy.

:class:`SchemaObject` is a ``TypedDict`` of every draft-07 keyword, all
optional, as in the upstream package ``neuro-api`` 4.0.0, so an action's
schema written as a literal gets completion and type checking::

    schema: SchemaObject = {"type": "object", "properties": {"x": {"type": "integer"}}}

It checks nothing at run time: :func:`neuro_api.schema.check_action` does.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, TypedDict

__all__ = [
    "CoreSchemaMetaSchema",
    "SchemaObject",
    "SimpleType",
]

SimpleType: TypeAlias = Literal[
    "array", "boolean", "integer", "null", "number", "object", "string"
]
"""The values of ``type``."""


class SchemaObject(TypedDict, total=False):
    """A JSON schema object: every draft-07 keyword, each optional."""

    # "$id", "$schema", "$ref" and "$comment" cannot be written as fields.
    title: str
    description: str
    default: object
    readOnly: bool
    writeOnly: bool
    examples: list[object]
    multipleOf: int | float
    maximum: int | float
    exclusiveMaximum: int | float
    minimum: int | float
    exclusiveMinimum: int | float
    maxLength: int
    minLength: int
    pattern: str
    additionalItems: CoreSchemaMetaSchema
    items: CoreSchemaMetaSchema | list[CoreSchemaMetaSchema]
    maxItems: int
    minItems: int
    uniqueItems: bool
    contains: CoreSchemaMetaSchema
    maxProperties: int
    minProperties: int
    required: list[str]
    additionalProperties: CoreSchemaMetaSchema
    definitions: dict[str, CoreSchemaMetaSchema]
    properties: dict[str, CoreSchemaMetaSchema]
    patternProperties: dict[str, CoreSchemaMetaSchema]
    dependencies: dict[str, CoreSchemaMetaSchema | list[str]]
    propertyNames: CoreSchemaMetaSchema
    const: object
    enum: list[object]
    type: SimpleType | list[SimpleType]
    format: str
    contentMediaType: str
    contentEncoding: str
    # "if", "else" and "not" are Python keywords: not writable as fields.
    then: CoreSchemaMetaSchema
    allOf: list[CoreSchemaMetaSchema]
    anyOf: list[CoreSchemaMetaSchema]
    oneOf: list[CoreSchemaMetaSchema]


CoreSchemaMetaSchema: TypeAlias = SchemaObject | bool
"""A subschema: a schema object, or ``true`` / ``false``."""
